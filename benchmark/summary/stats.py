"""Statistics behind the leaderboards: intervals, paired tests, DeLong, robustness, ranking.

Everything here works on numbers the leaderboard read from MLflow (per-seed metrics, logged test
predictions); nothing is retrained.  The choices, and why:

* Interval over seeds: a Student t interval (``mean ± t_{n-1, 0.975} · s / sqrt(n)``).  A seed
  changes the split, the masks and the initialisation, so the seeds are the independent
  replicates of a grid cell; with 3–5 seeds a bootstrap over seeds would be degenerate.
* Paired comparison across seeds: the paired t-test on the per-seed differences (the same seed
  means the same split and masks for both methods).  The Wilcoxon signed-rank p-value is computed
  too (CSV), but with fewer than 6 pairs its smallest two-sided p is 2/2^n ≥ 0.0625, so it can
  never reject at 0.05 on a 3-seed grid; that is why the t-test is the one shown.
* DeLong test on the pooled test predictions: both methods' scores paired by (seed, sample id),
  pooled over seeds as strata, samples that recur across seeds treated as clusters
  (``delong_stratified``); with one seed it is the plain DeLong test (``delong_test``, built on
  ``core.metrics.delong``).  Naive concatenation over seeds would count a test sample shared by
  every seed (an official split) as 3 independent samples and overstate significance.
* Robustness: the area under the AUC-vs-missing-rate curve (trapezoid, divided by the rate span so
  it reads as an average AUC) and the relative drop from rate 0.
* Ranking across datasets: average ranks, the Friedman test and the Nemenyi critical difference
  (Demšar 2006, JMLR 7:1-30).

Pure computation: no I/O, no MLflow, no formatting.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from core.metrics import delong, placements

ALPHA = 0.05  # significance level of every test the leaderboards show
LEVEL = 0.95  # confidence level of every interval the leaderboards show


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and two-sided t interval of replicate values."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def t_interval(values: np.ndarray | list[float], level: float = LEVEL) -> Summary:
    """Student t interval of the mean; n < 2 gives NaN spread and bounds (one seed says nothing
    about seed variation, and pretending otherwise would print a zero-width interval)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedResult:
    """Per-seed paired differences ``a - b``: their summary and two paired tests."""

    n: int
    diff: Summary
    p_ttest: float
    p_wilcoxon: float


def paired_tests(a: np.ndarray | list[float], b: np.ndarray | list[float], level: float = LEVEL) -> PairedResult:
    """Paired t-test (shown) and Wilcoxon signed-rank (exact for small n, CSV only) on a - b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_tests: {a.shape} vs {b.shape} values")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    summary = t_interval(d, level)
    p_t = p_w = math.nan
    if len(d) >= 2:
        if np.all(d == d[0]):
            # scipy returns NaN for zero variance; identical differences are either no
            # difference at all (p = 1) or a constant shift no replicate contradicts (p = 0).
            p_t = 1.0 if d[0] == 0 else 0.0
        else:
            p_t = float(sps.ttest_rel(a, b).pvalue)
        if np.any(d != 0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p_w = float(sps.wilcoxon(a, b).pvalue)
        else:
            p_w = 1.0
    return PairedResult(len(d), summary, p_t, p_w)


@dataclass(frozen=True)
class DelongResult:
    """DeLong test of AUC(a) - AUC(b) on the same samples."""

    n: int
    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p: float


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DelongResult:
    """Two-sided DeLong test for correlated ROC AUCs (binary labels, higher score = positive)."""
    labels = np.asarray(labels).astype(int).ravel()
    n = len(labels)
    if n == 0 or labels.min() == labels.max():
        return DelongResult(n, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    aucs, cov = delong(labels, np.stack([np.asarray(scores_a, float), np.asarray(scores_b, float)]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 0:  # identical rankings: no evidence of any difference
        return DelongResult(n, float(aucs[0]), float(aucs[1]), diff, 0.0, 0.0 if diff == 0 else math.inf,
                            1.0 if diff == 0 else 0.0)
    se = math.sqrt(var)
    z = diff / se
    return DelongResult(n, float(aucs[0]), float(aucs[1]), diff, se, z, float(2 * sps.norm.sf(abs(z))))


def delong_stratified(strata: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> DelongResult:
    """DeLong test of the seed-averaged AUC difference, strata = seeds, clustered by sample id.

    Each stratum is ``(ids, labels, scores_a, scores_b)`` for one seed, the two methods' scores
    paired by sample id.  The estimate is the mean over seeds of AUC_a - AUC_b (the same Δ the
    paired t-test sees).  Its variance is DeLong's, built from the structural components of every
    (seed, sample) pair, with the components of one sample id summed over seeds before squaring
    (Obuchowski 1997, clustered ROC data): when seeds share test samples (an official split), the
    repeats are not counted as new evidence; when they share none it is the usual DeLong variance
    of a mean of independent strata; with one seed it is exactly DeLong.  AUCs are computed within
    a seed only, so score scales that differ between seeds' models are never compared.
    """
    strata = [s for s in strata if len(s[1]) and 0 < int(np.sum(s[1])) < len(s[1])]
    if not strata:
        return DelongResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    k = len(strata)
    auc_a, auc_b = [], []
    cls_parts, id_parts, contrib_parts = [], [], []
    for ids, labels, a, b in strata:
        labels = np.asarray(labels).astype(int)
        ids = np.asarray(ids).astype(str)
        a10, a01 = placements(labels, np.asarray(a, np.float64))
        b10, b01 = placements(labels, np.asarray(b, np.float64))
        auc_a.append(float(a10.mean()))
        auc_b.append(float(b10.mean()))
        d = float(a10.mean() - b10.mean())
        for cls, comp in ((1, a10 - b10), (0, a01 - b01)):
            cls_parts.append(np.full(len(comp), cls))
            id_parts.append(ids[labels == cls])
            contrib_parts.append((comp - d) / (k * len(comp)))
    cls_all, id_all, contrib = np.concatenate(cls_parts), np.concatenate(id_parts), np.concatenate(contrib_parts)
    uniq, inverse = np.unique(id_all, return_inverse=True)
    per_id_cls = np.bincount(inverse, weights=cls_all, minlength=len(uniq)) / np.bincount(inverse, minlength=len(uniq))
    mixed = (per_id_cls > 0) & (per_id_cls < 1)
    if mixed.any():
        raise ValueError(f"delong_stratified: sample id {uniq[mixed][0]!r} has different labels in different seeds")
    sums = np.bincount(inverse, weights=contrib, minlength=len(uniq))  # one cluster per sample id
    var = 0.0
    for cls in (0, 1):
        z = sums[per_id_cls == cls]
        if len(z) < 2:
            return DelongResult(sum(len(s[1]) for s in strata), float(np.mean(auc_a)), float(np.mean(auc_b)),
                                math.nan, math.nan, math.nan, math.nan)
        var += len(z) / (len(z) - 1) * float(np.sum(z ** 2))
    n_total = sum(len(s[1]) for s in strata)
    mean_a, mean_b = float(np.mean(auc_a)), float(np.mean(auc_b))
    diff = mean_a - mean_b
    if var <= 1e-30:  # identical rankings everywhere: no evidence of any difference
        return DelongResult(n_total, mean_a, mean_b, diff, 0.0, 0.0 if diff == 0 else math.inf,
                            1.0 if diff == 0 else 0.0)
    se = math.sqrt(var)
    z = diff / se
    return DelongResult(n_total, mean_a, mean_b, diff, se, z, float(2 * sps.norm.sf(abs(z))))


def normalised_area(rates: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """Area under a metric-vs-missing-rate curve divided by the rate span (trapezoid rule).

    Dividing by the span makes it read as the curve's average value, comparable across grids of
    different widths only when the grids cover the same span (the leaderboard states the span).
    NaN when a value is missing or fewer than two rates exist: an area over a hole would favour
    the method with the hole.
    """
    r = np.asarray(rates, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(r) < 2 or not np.all(np.isfinite(v)):
        return math.nan
    order = np.argsort(r)
    r, v = r[order], v[order]
    span = r[-1] - r[0]
    if span <= 0:
        return math.nan
    return float(np.trapezoid(v, r) / span)


def mean_over_rates(rates: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """A seed's average over its rate curve (the AVG column and the row order); ``rates`` is unused
    but kept so it has the same signature as ``normalised_area``."""
    return float(np.mean(values))


def relative_drop(at_zero: float, value: float) -> float:
    """(AUC at rate 0 - AUC at rate r) / AUC at rate 0: the share of the complete-data AUC lost."""
    if not (np.isfinite(at_zero) and np.isfinite(value)) or at_zero == 0:
        return math.nan
    return float((at_zero - value) / at_zero)


@dataclass(frozen=True)
class RankingResult:
    """Average ranks (1 = best) over blocks, Friedman test and Nemenyi critical difference."""

    methods: tuple[str, ...]
    n_blocks: int
    average_ranks: tuple[float, ...]
    friedman_statistic: float
    friedman_p: float
    critical_difference: float


def nemenyi_critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """CD = q_alpha sqrt(k (k+1) / (6 N)), q_alpha the studentized range quantile / sqrt(2)."""
    if k < 2 or n_blocks < 1:
        return math.nan
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def rank_methods(scores: np.ndarray, methods: list[str], alpha: float = ALPHA) -> RankingResult:
    """Ranks methods (columns) within each block (row), higher score = better, ties averaged."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(methods):
        raise ValueError(f"rank_methods: scores {scores.shape} for {len(methods)} methods")
    if not np.all(np.isfinite(scores)):
        raise ValueError("rank_methods: every block needs a score for every method")
    n, k = scores.shape
    ranks = np.stack([sps.rankdata(-row) for row in scores]) if n else np.zeros((0, k))
    avg = ranks.mean(axis=0) if n else np.full(k, math.nan)
    stat = p = math.nan
    if k >= 3 and n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.friedmanchisquare(*[scores[:, j] for j in range(k)])
        stat, p = float(res.statistic), float(res.pvalue)
    return RankingResult(tuple(methods), n, tuple(float(a) for a in avg), stat, p,
                         nemenyi_critical_difference(k, n, alpha))
