"""AUC levels and paired AUC differences of any two "sides", averaged over rates (computation only).

Why: the scenario summary and the claims table compare things the leaderboard's ``compare`` does
not: a method's image-alone AUC against another method's, a method against the Bayes oracle or
against the oracle's *independent-evidence ceiling* (``ceiling_*`` metrics and
``ceiling_probs_*`` arrays of the oracle run), or one method across two suite entries (test
``mnar`` vs test ``mcar``).  A :class:`Side` names a row's metric in a section and the logged
probabilities it was computed from; a difference is paired by seed and test-sample id.

Intervals are the leaderboards' own (``intervals.honest_interval``): seed-to-seed spread plus
test-sample noise, the per-sample DeLong components of the two sides subtracted per sample id (a
paired DeLong variance), averaged over the rates per seed (``intervals.combine``).  Verdict:
**sig.** when the 95% interval excludes 0, else **n.s.** (not evidence of equality).

"No difference" needs more than n.s.: :func:`within_noise` says a difference is smaller than the
noise of the reference's own measurement -- its whole 95% interval lies inside +/- the half-width
of the reference AUC's 95% interval (:func:`noise_margin`; seeds and test samples), an
equivalence test whose margin is what the benchmark can resolve of one AUC at this test size.
A paired difference can be significant *and* within noise: a learnt model a hair below a
population optimum, on thousands of shared test samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from benchmark.summary.intervals import SampleEffects, combine, honest_interval, metric_effects
from benchmark.summary.model import CellStat, Row, Section

CEILING = "ceiling_"  # prefix of the oracle's independent-evidence metrics and prediction arrays
EVIDENCE_LABEL = "Independent-evidence ceiling"  # its reference row / line (sum of the marginal LLRs)
EVIDENCE_METHOD = "evidence_ceiling"  # its ``method`` in the CSVs
DIFF_BOUNDS = (-1.0, 1.0)  # a difference of two AUCs


def scenario_of(prefix: str) -> str:
    """``test`` -> ``mask``, ``tabular_missing`` -> ``tabular_missing`` (the predictions.npz key part)."""
    for scenario in EVAL_SCENARIOS:
        if metric_prefix(scenario) == prefix:
            return scenario
    raise ValueError(f"unknown evaluation prefix {prefix!r}")


@dataclass(frozen=True)
class Side:
    """One row's AUC in one section: the metric read from the runs and the probabilities
    (``predictions.npz`` key) its per-sample effects come from."""

    section: Section
    row: Row
    metric: str
    probs: str

    @classmethod
    def of(cls, section: Section, row: Row, prefix: str = "test", ceiling: bool = False) -> "Side":
        """The row's ``<prefix>_auc`` (``ceiling=True``: the oracle's independent-evidence ceiling)."""
        pre = CEILING if ceiling else ""
        return cls(section, row, f"{pre}{prefix}_auc", f"{pre}probs_{scenario_of(prefix)}")


def _effects(side: Side, run) -> SampleEffects | None:
    store = side.section.predictions
    pred = store.get(run) if store is not None else None
    if pred is None or side.probs not in pred or "ids" not in pred or "labels" not in pred:
        return None
    labels, probs = np.asarray(pred["labels"]), np.asarray(pred[side.probs])
    if probs.ndim != 2:
        return None
    task = "multilabel" if labels.ndim == 2 else ("binary" if probs.shape[1] == 2 else "multiclass")
    return metric_effects("auc", task, pred["ids"], labels, probs)


def seed_values(side: Side, rate: float) -> dict[int, tuple[float, SampleEffects | None]]:
    """Per seed with a finished run and a finite value: (value, per-sample effects or None)."""
    out = {}
    for seed in side.section.seeds:
        run = side.section.lookup.get((side.row.id, rate, seed))
        if run is None or run["status"] != "FINISHED":
            continue
        value = run.get(f"metrics.{side.metric}", math.nan)
        value = float(value) if value is not None else math.nan
        if np.isfinite(value):
            out[seed] = (value, _effects(side, run))
    return out


def has_values(side: Side) -> bool:
    """Whether any finished run of the side logged its metric (the ceiling exists only for oracles
    that log it)."""
    return any(seed_values(side, rate) for rate in side.section.rates)


def _estimate(per_seed: dict[int, list[tuple[float, SampleEffects | None, float]]], n_expected: int,
              bounds: tuple[float, float]) -> CellStat:
    """Per seed ``sum_r w_r value_r`` with the combined effects; the honest interval over seeds."""
    values = {s: float(sum(w * v for v, _, w in parts)) for s, parts in per_seed.items()}
    effects: dict[int, SampleEffects] = {}
    if per_seed and all(e is not None for parts in per_seed.values() for _, e, _ in parts):
        effects = {s: combine([e for _, e, _ in parts], [w for _, _, w in parts])  # type: ignore[misc]
                   for s, parts in per_seed.items()}
    summary, noisy = honest_interval(list(values.values()), list(effects.values()) if effects else None,
                                     bounds=bounds)
    return CellStat(summary, n_expected, n_no_value=max(0, n_expected - len(values)), values=values,
                    effects=effects, with_test_noise=noisy)


def common_rates(*sides: Side) -> list[float]:
    """The rates every side's section has: a difference is only taken where both were run."""
    rates = set(sides[0].section.rates)
    for side in sides[1:]:
        rates &= set(side.section.rates)
    return sorted(rates)


def level(side: Side, rates: Sequence[float] | None = None) -> CellStat:
    """The side's AUC averaged over ``rates`` (default: all of its section's) per seed, then over
    the seeds that have every rate, with the honest 95% interval."""
    rates = list(side.section.rates if rates is None else rates)
    per_rate = [seed_values(side, r) for r in rates]
    seeds = set.intersection(*(set(v) for v in per_rate)) if per_rate else set()
    per_seed = {s: [(pr[s][0], pr[s][1], 1.0 / len(rates)) for pr in per_rate] for s in sorted(seeds)}
    return _estimate(per_seed, len(side.section.seeds), (0.0, 1.0))


def difference(a: Side, b: Side, rates: Sequence[float] | None = None) -> CellStat:
    """AUC(a) - AUC(b), per seed averaged over ``rates`` (default: the rates both sections have),
    paired by seed (and by test-sample id in the interval), over the seeds having every rate on
    both sides."""
    rates = list(common_rates(a, b) if rates is None else rates)
    pa, pb = [seed_values(a, r) for r in rates], [seed_values(b, r) for r in rates]
    seeds = set.intersection(*(set(v) for v in pa + pb)) if rates else set()
    w = 1.0 / len(rates) if rates else 0.0
    per_seed = {s: [(va[s][0], va[s][1], w) for va in pa] + [(vb[s][0], vb[s][1], -w) for vb in pb]
                for s in sorted(seeds)}
    expected = len(set(a.section.seeds) & set(b.section.seeds))
    return _estimate(per_seed, expected, DIFF_BOUNDS)


def has_interval(c: CellStat) -> bool:
    """Whether the cell has replicates and a finite 95% interval (one seed has none)."""
    s = c.summary
    return c.n > 0 and bool(np.isfinite(s.ci_low) and np.isfinite(s.ci_high))


def verdict(c: CellStat) -> str:
    """"sig." when the 95% interval excludes 0, "n.s." when it does not, "—" without an interval."""
    if not has_interval(c):
        return "—"
    return "sig." if c.summary.ci_low > 0 or c.summary.ci_high < 0 else "n.s."


def noise_margin(reference: CellStat) -> float | None:
    """Half the width of the reference AUC's 95% interval (seeds and test samples): how precisely
    one AUC is known at this test size; None without a finite interval."""
    if not has_interval(reference):
        return None
    return float(reference.summary.ci_high - reference.summary.ci_low) / 2.0


def within_noise(c: CellStat, margin: float | None) -> bool:
    """Whether the difference's whole 95% interval lies inside +/- ``margin`` (equivalence: the
    two AUCs differ by less than the reference's own measurement noise)."""
    if margin is None or not has_interval(c):
        return False
    return -margin <= c.summary.ci_low and c.summary.ci_high <= margin


def ceiling_cells(section: Section, prefix: str = "test") -> list[CellStat] | None:
    """The independent-evidence ceiling per rate (from the section's oracle row), None when the
    section has no oracle or its oracle logged no ceiling (other datasets, older runs)."""
    refs = section.reference_rows()
    if not refs:
        return None
    side = Side.of(section, refs[0], prefix, ceiling=True)
    if not has_values(side):
        return None
    return [level(side, [rate]) for rate in section.rates]


def ceiling_average(section: Section, prefix: str = "test") -> CellStat | None:
    """The ceiling's AVG over the section's rates (the headline's reference row), or None."""
    refs = section.reference_rows()
    if not refs:
        return None
    side = Side.of(section, refs[0], prefix, ceiling=True)
    return level(side) if has_values(side) else None
