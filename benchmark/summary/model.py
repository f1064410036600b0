"""The leaderboard's grid model: rows, cells and (pattern, protocol) sections of normalised runs.

Trust rules enforced here:

* The grid a section expects is the union of the methods, rates and seeds seen in any run of that
  (pattern, protocol); a cell lacking a finished run counts the missing seeds with the reason
  (failed / running / finished without a value / never run), it is never dropped.
* Rows are (method, tuned or default, config hash): results of different configs are never
  averaged together.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from benchmark.summary.intervals import SampleEffects, combine, honest_interval, metric_effects
from benchmark.summary.load import FAILED_STATUSES, latest_per_key, sort_by_recency
from benchmark.summary.predictions import PredictionStore
from benchmark.summary.stats import Summary, mean_over_rates


@dataclass(frozen=True)
class Row:
    """A leaderboard row: one method under one setting (default/tuned) and one config hash."""

    id: str
    method: str
    display: str
    setting: str
    config_hash: str
    is_reference: bool
    label: str


@dataclass
class CellStat:
    """Replicates of one (row, rate, metric) cell and why the missing seeds are missing."""

    summary: Summary
    n_expected: int
    n_failed: int = 0
    n_running: int = 0
    n_no_value: int = 0
    n_not_run: int = 0
    n_incomplete: int = 0  # AVG / area: seeds lacking some rate
    values: dict[int, float] = field(default_factory=dict)
    effects: dict[int, SampleEffects] = field(default_factory=dict)  # per seed, for test-noise intervals
    with_test_noise: bool = False  # the interval includes test-sample noise (else: seeds only)
    n_leak: int = 0  # seeds the leak guard flagged (test AUC above the Bayes oracle's + 3 SE)

    @property
    def n(self) -> int:
        return self.summary.n

    def reasons(self) -> str:
        parts = [f"{v} {k}" for k, v in (("failed", self.n_failed), ("running", self.n_running),
                                         ("no value", self.n_no_value), ("not run", self.n_not_run),
                                         ("seed(s) incomplete", self.n_incomplete)) if v]
        return ", ".join(parts)


@dataclass
class Section:
    """One (pattern, protocol) block of a dataset: its expected grid and the run of each cell."""

    pattern: str
    protocol: str
    rates: list[float]
    seeds: list[int]
    rows: list[Row]
    lookup: dict[tuple[str, float, int], pd.Series]
    predictions: PredictionStore | None = None  # set by the report: per-sample effects for intervals
    memo: dict[tuple[str, float, str], "CellStat"] = field(default_factory=dict, repr=False)

    @property
    def slug(self) -> str:
        # file-name safe: a protocol heading may name a mechanism (``both, mnar(s=1.5)``)
        return re.sub(r"[^A-Za-z0-9_.=]+", "-", f"{self.pattern}_{self.protocol}").strip("-")

    def method_rows(self) -> list[Row]:
        return [r for r in self.rows if not r.is_reference]

    def reference_rows(self) -> list[Row]:
        return [r for r in self.rows if r.is_reference]

    def use_predictions(self, store: PredictionStore | None) -> None:
        """Intervals from here on include test-sample noise where predictions were logged."""
        self.predictions = store
        self.memo.clear()

    def cell(self, row: Row, rate: float, metric: str) -> CellStat:
        key = (row.id, rate, metric)
        if key not in self.memo:
            self.memo[key] = self.compute_cell(row, rate, metric)
        return self.memo[key]

    def compute_cell(self, row: Row, rate: float, metric: str) -> CellStat:
        values: dict[int, float] = {}
        leaks = 0
        counts = dict(n_failed=0, n_running=0, n_no_value=0, n_not_run=0)
        for seed in self.seeds:
            run = self.lookup.get((row.id, rate, seed))
            if run is None:
                counts["n_not_run"] += 1
            elif run["status"] in FAILED_STATUSES:
                counts["n_failed"] += 1
            elif run["status"] != "FINISHED":
                counts["n_running"] += 1
            else:
                value = run.get(f"metrics.{metric}", math.nan)
                value = float(value) if value is not None else math.nan
                if np.isfinite(value):
                    values[seed] = value
                    leaks += bool(run.get("leak", False))
                else:
                    counts["n_no_value"] += 1
        effects = self.seed_effects(row, rate, metric, values)
        summary, noisy = honest_interval(list(values.values()), list(effects.values()) if effects else None)
        return CellStat(summary, len(self.seeds), values=values, effects=effects, with_test_noise=noisy,
                        n_leak=leaks, **counts)

    def seed_effects(self, row: Row, rate: float, metric: str, values: dict[int, float]) -> dict[int, SampleEffects]:
        """Per-sample effects of every seed with a value, from its logged test predictions; empty
        when any seed lacks them (its interval is then over seeds only, and says so)."""
        prefix, _, name = metric.rpartition("_")
        scenario = next((s for s in EVAL_SCENARIOS if metric_prefix(s) == prefix), None)
        if self.predictions is None or scenario is None or name not in ("auc", "acc") or not values:
            return {}
        out = {}
        for seed in values:
            pred = self.predictions.get(self.lookup[(row.id, rate, seed)])
            key = f"probs_{scenario}"
            if pred is None or key not in pred or "ids" not in pred or "labels" not in pred:
                return {}
            labels, probs = np.asarray(pred["labels"]), np.asarray(pred[key])
            task = "multilabel" if labels.ndim == 2 else ("binary" if probs.shape[1] == 2 else "multiclass")
            effects = metric_effects(name, task, pred["ids"], labels, probs)
            if effects is None:
                return {}
            out[seed] = effects
        return out

    def per_seed_aggregate(self, row: Row, metric: str,
                           reduce: Callable[[list[float], list[float]], float]) -> CellStat:
        """A statistic of each seed's whole rate curve (mean over rates, area), then the interval over
        seeds; seeds lacking any rate are counted as incomplete rather than averaged over a hole.
        Both statistics are linear in the per-rate values, so a seed's per-sample effects are the
        same weighted sum of its per-rate effects (the same test ids at every rate)."""
        cells = [self.cell(row, rate, metric) for rate in self.rates]
        weights = [reduce(self.rates, list(np.eye(len(self.rates))[i])) for i in range(len(self.rates))]
        values, effects = {}, {}
        for seed in self.seeds:
            curve = [c.values.get(seed, math.nan) for c in cells]
            if all(np.isfinite(curve)):
                v = reduce(self.rates, curve)
                if np.isfinite(v):
                    values[seed] = v
                    if all(seed in c.effects for c in cells):
                        effects[seed] = combine([c.effects[seed] for c in cells], weights)
        complete = effects if len(effects) == len(values) else {}
        summary, noisy = honest_interval(list(values.values()), list(complete.values()) if complete else None)
        return CellStat(summary, len(self.seeds), n_incomplete=len(self.seeds) - len(values), values=values,
                        effects=complete, with_test_noise=noisy)

    def average_auc(self, row: Row) -> float:
        """The row's AVG test AUC (each seed's mean over the rates, then the mean over seeds with
        every rate): what orders the rows and ranks the methods."""
        return self.per_seed_aggregate(row, "test_auc", mean_over_rates).summary.mean


def build_sections(runs: pd.DataFrame) -> list[Section]:
    """Sections with rows ordered by average test AUC (best first), reference rows last."""
    latest = latest_per_key(runs)
    placed = latest[latest["placed"]]
    sections = []
    for (pattern, protocol), group in placed.groupby(["pattern", "protocol"], sort=True):
        rates = sorted(float(r) for r in group["rate"].unique())
        seeds = sorted(int(s) for s in group["seed"].unique())
        # Within a (row, rate, seed) several keys can only differ by budget fields that the config
        # hash already covers; keep the latest finished one, as for keys.
        ordered = sort_by_recency(group)
        lookup = {(r["row_id"], float(r["rate"]), int(r["seed"])): r for _, r in ordered.iterrows()}
        rows = _rows(group)
        section = Section(pattern, protocol, rates, seeds, rows, lookup)
        avg = {row.id: section.average_auc(row) for row in rows}
        section.rows = sorted(rows, key=lambda row: (row.is_reference, -avg[row.id] if np.isfinite(avg[row.id])
                                                     else math.inf, row.display, row.setting, row.config_hash))
        sections.append(section)
    return sections


def _rows(group: pd.DataFrame) -> list[Row]:
    rows = []
    hashes_per_method = group.groupby(["method", "setting"])["config_hash"].nunique()
    fingerprints_per_row = group.groupby(["method", "setting", "config_hash"])["fingerprint"].nunique()
    for row_id, g in group.groupby("row_id", sort=True):
        first = g.sort_values("key").iloc[0]
        display = str(first["display"])
        label = display
        if hashes_per_method[(first["method"], first["setting"])] > 1:
            label = f"{display} [cfg {first['config_hash'][:8]}]"
        if fingerprints_per_row[(first["method"], first["setting"], first["config_hash"])] > 1:
            label = f"{label} [{first['fingerprint']}]"  # --all-fingerprints: one row per fingerprint
        rows.append(Row(row_id, str(first["method"]), display, str(first["setting"]), str(first["config_hash"]),
                        bool(first["is_reference"]), label))
    return rows
