"""The tags that let the summary select one suite entry's runs from the suite's shared store.

Why tags: every entry of the scenario suite is the ``synthetic`` dataset, so all its runs land in
one MLflow experiment (``medfusion-synthetic``), and the leaderboard's sections are keyed by
(pattern, protocol) only.  Two entries never *pool* (their dataset options or missing specs
differ, so their config hashes and run keys differ: :func:`check_disjoint` refuses a suite where
they would not), but a per-entry leaderboard still has to pick its own runs.  After an entry's
grid, every attempt of every key of that grid is tagged ``suite``, ``suite_entry``,
``suite_scenario``, ``suite_evaluate`` and ``suite_test_mechanism`` (:func:`tag_entry`), so the summary is built from the
store alone.  An interrupted entry is tagged by the next invocation (resume tags every key).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mlflow.entities import RunTag

from benchmark.config.schema import BenchmarkConfig
from benchmark.grid.build import build_grid
from benchmark.grid.spec import RunSpec
from benchmark.suite.spec import Suite, SuiteEntry
from benchmark.tracking.store import Tracker
from core.errors import ConfigError
from datasets import create_dataset

SUITE_TAG = "suite"
ENTRY_TAG = "suite_entry"
SCENARIO_TAG = "suite_scenario"
EVALUATE_TAG = "suite_evaluate"
TEST_MECHANISM_TAG = "suite_test_mechanism"  # the mechanism of the test masks: pairs test mnar with test mcar


def test_mechanism(cfg: BenchmarkConfig) -> str:
    """The missingness mechanism of the test masks: ``missing.test_mechanism`` when set, else the
    training one (``missing.mechanism``), ``mcar`` for configs without mechanisms."""
    missing = cfg.missing
    return str(getattr(missing, "test_mechanism", None) or getattr(missing, "mechanism", None) or "mcar")


def entry_tags(suite: Suite, entry: SuiteEntry, cfg: BenchmarkConfig) -> dict[str, str]:
    """The tags of every run of ``entry`` (``cfg``: its validated config)."""
    return {SUITE_TAG: suite.name, ENTRY_TAG: entry.name, SCENARIO_TAG: entry.scenario, EVALUATE_TAG: entry.evaluate,
            TEST_MECHANISM_TAG: test_mechanism(cfg)}


def entry_grid(cfg: BenchmarkConfig) -> list[RunSpec]:
    """The cells ``run_benchmark`` runs for ``cfg`` (the oracle included when the dataset has one)."""
    dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
    return build_grid(cfg, with_oracle=dataset.oracle() is not None)


def entry_keys(cfg: BenchmarkConfig) -> set[str]:
    """The run keys of ``cfg``'s grid."""
    return {spec.key() for spec in entry_grid(cfg)}


def check_disjoint(grids: Sequence[tuple[str, Sequence[RunSpec]]]) -> None:
    """Refuse a suite whose entries share a run key or a leaderboard row (config hash): a shared
    key would be one run tagged with two entries, a shared config hash two entries' runs in one row."""
    seen_keys: dict[str, str] = {}
    seen_rows: dict[tuple[str, str], str] = {}
    for name, grid in grids:
        for spec in grid:
            other = seen_keys.get(spec.key())
            if other is not None and other != name:
                raise ConfigError(f"suite entries '{other}' and '{name}' share the cell {spec.label()}: "
                                  "give them different dataset options or missing specs")
            seen_keys[spec.key()] = name
            row = (spec.method, spec.config_hash())
            other = seen_rows.get(row)
            if other is not None and other != name:
                raise ConfigError(f"suite entries '{other}' and '{name}' share the config hash of {spec.method}: "
                                  "their runs would pool in one leaderboard row")
            seen_rows[row] = name


def tag_entry(tracking_uri: str, results_dir: Path, dataset: str, keys: set[str], tags: dict[str, str]) -> int:
    """Tag every attempt (any status) of ``keys`` in the dataset's experiment; returns how many
    runs were (re)tagged.  Runs already carrying the tags are left alone."""
    tracker = Tracker(tracking_uri, Path(results_dir))
    exp_id = tracker.experiment_id(dataset, create=False)
    if exp_id is None:
        return 0
    changed = 0
    for key, runs in tracker.runs_by_key(exp_id).items():
        if key not in keys:
            continue
        for run in runs:
            todo = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
            if todo:
                tracker.client.log_batch(run.info.run_id, tags=todo)
                changed += 1
    return changed
