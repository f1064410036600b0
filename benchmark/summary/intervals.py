"""Intervals that include test-sample noise as well as seed-to-seed variation.

A leaderboard mean is the average over seeds of a metric measured on a finite test sample.  Its
uncertainty has two sources: the seed (initialisation, masks, and the split or the data when
those follow the seed) and the test sample.  When every seed shares one test set (an official
split, or the synthetic dataset with a fixed data seed) the seed-to-seed spread leaves the second
out entirely: the Bayes oracle's rows then showed a zero-width interval.

The model: ``M_s = mu + t_s + e_s`` with ``t_s`` the seed effect (variance ``sigma_t^2``) and
``e_s`` the test-sample error of seed ``s``.  Each seed's per-sample influence on its metric (the
DeLong structural components for AUC, the centred correctness for accuracy) gives ``V_s =
Var(e_s)``; summing the influences of one sample id across seeds before squaring (as for clustered
ROC data, Obuchowski 1997) gives ``V_mean = Var(mean_s e_s)``, which counts a test sample shared
by several seeds once.  Then ``E[s^2] = sigma_t^2 + mean V_s - C``, where ``C`` is the mean
covariance between different seeds' errors, recovered from ``n^2 V_mean = sum V_s + n(n-1) C``.
So

    Var(mean) = max(0, s^2 - mean V_s + C) / n + V_mean,

which reduces to ``s^2 / n`` when the seeds' test sets are disjoint (C = 0: the spread already
contains the test noise) and to ``s^2 / n + V`` when they share one test set.  The interval uses
a Student t quantile with Welch-Satterthwaite degrees of freedom (the seed part has n - 1, the
test part is treated as known): a normal quantile when the seed part vanishes, t(n-1) when it
dominates.  One seed gives the test-sample interval alone, never a zero-width one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from benchmark.summary.stats import LEVEL, Summary, t_interval
from core.metrics import placements


@dataclass(frozen=True)
class SampleEffects:
    """One seed's per-sample influence on its metric: ``metric - E[metric] ~ sum_i effects[i]``.

    ``groups`` are the independent sampling strata of the estimate (the classes for AUC, one
    group for accuracy); the within-group ``n / (n - 1)`` correction makes ``variance`` the usual
    DeLong (or binomial) variance."""

    ids: np.ndarray
    groups: np.ndarray
    effects: np.ndarray

    @property
    def variance(self) -> float:
        return clustered_variance([self], [1.0])


def auc_effects(ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> SampleEffects | None:
    """Binary AUC: positives' and negatives' DeLong components, centred and scaled by class size."""
    labels = np.asarray(labels).astype(int)
    m, n = int(labels.sum()), int((1 - labels).sum())
    if m < 2 or n < 2:
        return None
    auc_pos, auc_neg = placements(labels, np.asarray(scores, np.float64))
    auc = float(auc_pos.mean())
    effects = np.empty(len(labels))
    effects[labels == 1] = (auc_pos - auc) / m
    effects[labels == 0] = (auc_neg - auc) / n
    return SampleEffects(np.asarray(ids).astype(str), labels.astype(str), effects)


def metric_effects(metric: str, task: str, ids: np.ndarray, labels: np.ndarray,
                   probs: np.ndarray) -> SampleEffects | None:
    """Per-sample effects of ``auc`` (binary; macro over classes/labels otherwise) or ``acc``;
    None for metrics without a per-sample decomposition (balanced accuracy, F1: seeds only)."""
    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if metric == "acc":
        if task == "multilabel":
            correct = ((probs >= 0.5).astype(int) == labels.astype(int)).mean(axis=1)
        else:
            correct = (probs.argmax(axis=1) == labels.astype(int)).astype(float)
        n = len(correct)
        if n < 2:
            return None
        return SampleEffects(ids, np.zeros(n, dtype=str), (correct - correct.mean()) / n)
    if metric != "auc":
        return None
    if task == "binary":
        return auc_effects(ids, labels, probs[:, 1])
    columns = labels.astype(int) if task == "multilabel" else np.eye(probs.shape[1], dtype=int)[labels.astype(int)]
    parts = [auc_effects(ids, columns[:, k], probs[:, k]) for k in range(probs.shape[1])
             if 0 < columns[:, k].sum() < len(columns)]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    # Macro average: each sample's effect averaged over the one-vs-rest AUCs it enters.
    return SampleEffects(ids, np.zeros(len(ids), dtype=str), np.mean([p.effects for p in parts], axis=0))


def combine(effects: Sequence[SampleEffects], weights: Sequence[float]) -> SampleEffects:
    """The effects of ``sum_r w_r metric_r`` for one seed (e.g. the mean or the area over rates):
    the same test ids at every rate, so the effects add per id."""
    ids = np.concatenate([e.ids for e in effects])
    groups = np.concatenate([e.groups for e in effects])
    values = np.concatenate([w * e.effects for e, w in zip(effects, weights)])
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return SampleEffects(uniq, groups[first], np.bincount(inverse, weights=values, minlength=len(uniq)))


def clustered_variance(effects: Sequence[SampleEffects], weights: Sequence[float]) -> float:
    """Variance of ``sum_s w_s e_s`` with one sample id a cluster across the seeds' estimates."""
    ids = np.concatenate([e.ids for e in effects])
    groups = np.concatenate([e.groups for e in effects])
    values = np.concatenate([w * e.effects for e, w in zip(effects, weights)])
    keys = np.char.add(np.char.add(groups.astype(str), "\0"), ids.astype(str))
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(uniq))
    total = 0.0
    for group in np.unique(groups[first]):
        z = sums[groups[first] == group]
        if len(z) >= 2:
            total += len(z) / (len(z) - 1) * float(np.sum(z ** 2))
    return total


def honest_interval(values: Sequence[float], effects: Sequence[SampleEffects] | None,
                    level: float = LEVEL, bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[Summary, bool]:
    """(summary, includes test noise): the interval of the mean over seeds described above; the
    plain t interval over seeds when a seed has no per-sample predictions.  ``bounds``: the range
    the estimate lives in (an AUC: [0, 1]; a difference of two AUCs: [-1, 1])."""
    x = np.asarray(values, dtype=np.float64)
    if effects is None or len(effects) != len(x) or len(x) == 0:
        return t_interval(x, level), False
    n = len(x)
    per_seed = np.asarray([e.variance for e in effects])
    v_mean = clustered_variance(effects, [1.0 / n] * n)
    mean = float(x.mean())
    if n == 1:
        seed_part, std = 0.0, math.nan
    else:
        std = float(x.std(ddof=1))
        cross = (n * n * v_mean - per_seed.sum()) / (n * (n - 1))
        seed_part = max(0.0, std ** 2 - float(per_seed.mean()) + cross) / n
    var = seed_part + v_mean
    df = math.inf if seed_part <= 0 else (var ** 2) * (n - 1) / seed_part ** 2
    quantile = float(sps.norm.ppf(0.5 + level / 2)) if math.isinf(df) else float(sps.t.ppf(0.5 + level / 2, df))
    half = quantile * math.sqrt(max(var, 0.0))
    # Every metric here (AUC, accuracy) lives in [0, 1]: a bound outside it says nothing more.
    return Summary(n, mean, std, max(bounds[0], mean - half), min(bounds[1], mean + half)), True
