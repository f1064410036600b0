"""Paired comparisons of two leaderboard rows at one rate (computation only).

Seeds are paired only when both runs used identical masks (same split, same missingness); the
DeLong test then pairs the two runs' logged test predictions by (seed, sample id).  A comparison
is called significant only when the t-test and (for binary tasks) DeLong both say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchmark.summary.model import Row, Section
from benchmark.summary.predictions import PredictionStore, binary_scores
from benchmark.summary.stats import ALPHA, DelongResult, PairedResult, delong_stratified, paired_tests
from core.errors import BenchmarkError


@dataclass
class Comparison:
    """One method row against a reference row at one rate: the seed-paired t-test and, for binary
    tasks with logged predictions, the DeLong test; the counts say which seeds were left out."""

    row: Row
    reference: Row
    rate: float
    paired: PairedResult | None
    delong: DelongResult | None
    n_mask_mismatch: int = 0
    n_no_predictions: int = 0
    delong_note: str = ""

    @property
    def significant(self) -> bool:
        """Significant only when the seed-paired t-test and (for binary tasks) DeLong both say so."""
        if self.paired is None or not np.isfinite(self.paired.p_ttest) or self.paired.p_ttest >= ALPHA:
            return False
        if self.delong is not None:
            return bool(np.isfinite(self.delong.p) and self.delong.p < ALPHA)
        return True


def compare(section: Section, row: Row, reference: Row, rate: float, predictions: PredictionStore | None) -> Comparison:
    """Row minus reference at one rate: seeds paired on identical masks, then DeLong on the pooled
    test predictions paired by (seed, sample id)."""
    a_vals, r_vals, seeds, mismatch = [], [], [], 0
    for seed in section.seeds:
        ra, rr = section.lookup.get((row.id, rate, seed)), section.lookup.get((reference.id, rate, seed))
        if ra is None or rr is None or ra["status"] != "FINISHED" or rr["status"] != "FINISHED":
            continue
        va, vr = ra.get("metrics.test_auc", math.nan), rr.get("metrics.test_auc", math.nan)
        if not (np.isfinite(va) and np.isfinite(vr)):
            continue
        if any(ra[c] and rr[c] and ra[c] != rr[c] for c in ("mask_test", "mask_train")):
            mismatch += 1  # not the same masks: not a paired replicate
            continue
        a_vals.append(float(va))
        r_vals.append(float(vr))
        seeds.append(seed)
    paired = paired_tests(a_vals, r_vals) if seeds else None
    comp = Comparison(row, reference, rate, paired, None, n_mask_mismatch=mismatch)
    if not seeds or predictions is None:
        return comp
    strata = []
    for seed in seeds:
        ra, rr = section.lookup[(row.id, rate, seed)], section.lookup[(reference.id, rate, seed)]
        pa, pr = predictions.get(ra), predictions.get(rr)
        if pa is None or pr is None:
            comp.n_no_predictions += 1
            continue
        ba, br = binary_scores(pa), binary_scores(pr)
        if ba is None or br is None:
            comp.delong_note = "DeLong n/a (not a binary task)"
            return comp
        ids_a, lab_a, s_a = ba
        ids_r, lab_r, s_r = br
        common, ia, ir = np.intersect1d(ids_a, ids_r, assume_unique=False, return_indices=True)
        if len(common) == 0:
            continue
        if not np.array_equal(lab_a[ia], lab_r[ir]):
            raise BenchmarkError(f"predictions.npz of runs {ra['run_id']} and {rr['run_id']} (seed {seed}, "
                                 f"rate {rate:g}) disagree on the labels of the same sample ids")
        strata.append((common, lab_a[ia], s_a[ia], s_r[ir]))
    if comp.n_no_predictions:
        comp.delong_note = "DeLong n/a (no predictions.npz)"
    if strata and not comp.n_no_predictions:
        try:
            comp.delong = delong_stratified(strata)
        except ValueError as exc:
            raise BenchmarkError(f"rate {rate:g}, {row.method} vs {reference.method}: {exc}") from None
    return comp
