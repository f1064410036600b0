"""Run specs and the grid: the one run identity, and a config expanded into its cells."""
from __future__ import annotations

from benchmark.grid.build import build_grid, cell_spec
from benchmark.grid.spec import COORDINATES, EVAL_SCENARIOS, ORACLE_METHOD, RunSpec, digest, drop_keys, metric_prefix

__all__ = ["COORDINATES", "EVAL_SCENARIOS", "ORACLE_METHOD", "RunSpec", "build_grid", "cell_spec", "digest",
           "drop_keys", "metric_prefix"]
