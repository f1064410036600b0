"""Benchmark suites: several benchmark configs (entries) run one after another into one store.

``spec``: the suite file (``configs/suites/<name>.yaml``) read and expanded into configs;
``tags``: the tags that let the summary select one entry's runs from the shared store.
"""
from __future__ import annotations

from benchmark.suite.spec import Suite, SuiteEntry, entry_config, load_suite
from benchmark.suite.tags import check_disjoint, entry_grid, entry_keys, entry_tags, tag_entry

__all__ = ["Suite", "SuiteEntry", "check_disjoint", "entry_config", "entry_grid", "entry_keys", "entry_tags", "load_suite",
           "tag_entry"]
