"""A suite's runs read back from its store, one :class:`Entry` per suite entry (computation only).

Why a selection: every entry of the scenario suite is the ``synthetic`` dataset, so all its runs
share one MLflow experiment; an entry's runs are the ones tagged ``suite_entry=<name>``
(``benchmark.suite.tags``).  Within an entry a row keeps its newest configuration: when the suite
file changes (say a smaller ``n_train``), the runs of the older configuration stay in the store,
tagged with the same entry, and are counted as superseded instead of becoming a second row (the
oracle would otherwise have two reference rows).  Nothing here reads the suite file.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from benchmark.summary.contrast import Side
from benchmark.summary.load import as_text, datasets_in_store, load_all_runs, select_fingerprints
from benchmark.summary.model import Row, Section, build_sections
from benchmark.summary.predictions import PredictionStore
from benchmark.suite.tags import ENTRY_TAG, EVALUATE_TAG, SCENARIO_TAG, SUITE_TAG, TEST_MECHANISM_TAG

# The order of the summary's columns: the scenarios spec's order, then any other scenario by name.
SCENARIO_ORDER = ("balanced", "interaction", "redundant_hard", "dominant", "informative_missing")


@dataclass
class Entry:
    """One suite entry: what it tests (from its runs' tags), its runs and its leaderboard section."""

    name: str
    scenario: str
    evaluate: str          # the metric prefix the summary reads (test, tabular_missing, ...)
    test_mechanism: str
    dataset: str
    runs: pd.DataFrame     # the runs shown (newest configuration per row)
    section: Section | None
    superseded: int = 0    # runs of an older configuration of this entry, not shown
    extra_sections: int = 0  # sections beyond the first (an entry has one missing pattern/protocol)

    def oracle(self) -> Row | None:
        refs = self.section.reference_rows() if self.section is not None else []
        return refs[0] if refs else None

    def method(self, name: str) -> Row | None:
        """The method's default-setting row (else its first row), None when it has no run here."""
        if self.section is None:
            return None
        rows = [r for r in self.section.method_rows() if r.method == name]
        default = [r for r in rows if r.setting == "default"]
        return (default or rows or [None])[0]

    def side(self, row: Row | None, prefix: str | None = None, ceiling: bool = False) -> Side | None:
        """``row``'s AUC under ``prefix`` (default: the entry's own evaluation), or None."""
        if row is None or self.section is None:
            return None
        return Side.of(self.section, row, prefix or self.evaluate, ceiling=ceiling)


def suite_runs(tracking_uri: str, suite: str) -> pd.DataFrame:
    """Every run (every attempt) tagged with ``suite`` in any dataset experiment of the store."""
    frames = []
    for dataset in datasets_in_store(tracking_uri):
        runs = load_all_runs(tracking_uri, dataset)
        column = f"tags.{SUITE_TAG}"
        if runs.empty or column not in runs:
            continue
        runs = runs[runs[column].map(as_text) == suite].copy()
        if not runs.empty:
            runs["suite_dataset"] = dataset
            frames.append(runs)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def newest_configs(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(runs of each (method, setting)'s newest config hash, how many runs were left out)."""
    if runs.empty:
        return runs, 0
    ends = pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.Series(pd.NaT, index=runs.index)
    starts = pd.to_datetime(runs["start_time"], utc=True) if "start_time" in runs else ends
    recency = ends.fillna(starts)
    keep = pd.Series(True, index=runs.index)
    for _, group in runs.assign(recency=recency).groupby(["method", "setting"], sort=True):
        newest = group.groupby("config_hash")["recency"].max().sort_index()
        chosen = newest.idxmax() if newest.notna().any() else newest.index[-1]
        keep[group.index[group["config_hash"] != chosen]] = False
    return runs[keep], int((~keep).sum())


def _tag(group: pd.DataFrame, tag: str, default: str) -> str:
    """An entry's tag value (the same on all its runs; the last in sort order if an old run differs)."""
    column = f"tags.{tag}"
    values = sorted({v for v in group[column].map(as_text) if v}) if column in group else []
    return values[-1] if values else default


def load_entries(tracking_uri: str, suite: str, predictions: PredictionStore | None,
                 runs: pd.DataFrame | None = None) -> list[Entry]:
    """The suite's entries, in scenario order, each with its section (predictions attached for
    the intervals' test-sample noise)."""
    runs = suite_runs(tracking_uri, suite) if runs is None else runs
    column = f"tags.{ENTRY_TAG}"
    if runs.empty or column not in runs:
        return []
    entries = []
    for name, group in runs.groupby(runs[column].map(as_text), sort=True):
        if not name:
            continue
        shown, superseded = newest_configs(group)
        current, _ = select_fingerprints(shown)
        sections = build_sections(current)
        section = sections[0] if sections else None
        if section is not None:
            section.use_predictions(predictions)
        entries.append(Entry(str(name), _tag(group, SCENARIO_TAG, "unknown"), _tag(group, EVALUATE_TAG, "test"),
                             _tag(group, TEST_MECHANISM_TAG, "mcar"), str(group["suite_dataset"].iloc[0]),
                             shown, section, superseded, max(0, len(sections) - 1)))

    def order(e: Entry) -> tuple[int, str, str]:
        rank = SCENARIO_ORDER.index(e.scenario) if e.scenario in SCENARIO_ORDER else len(SCENARIO_ORDER)
        return rank, e.scenario, e.name

    return sorted(entries, key=order)


def entry_by_name(entries: list[Entry], name: str) -> Entry | None:
    """The entry called ``name`` (claims name the entry that tests them), None when not run."""
    return next((e for e in entries if e.name == name), None)
