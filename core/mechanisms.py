"""Drop sequences and covariate ranks of the missingness mechanisms (scenarios spec A).

Pure helpers of ``core.masks`` (which defines the mechanisms and documents why these orders are
exact and nested); kept apart so each module stays small.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def weighted_quota_sequence(sizes: Sequence[int], weights: Sequence[float], targets: np.ndarray) -> np.ndarray:
    """The stratum of each successive drop when stratum ``k``'s count should follow ``targets[T, k]``
    (non-decreasing in ``T``, summing to ``T``): earliest lower-quota deadline first among the
    strata below their upper quota, ties by the largest ``n_k w_k / (dropped + 1)``, then index.
    Every count stays within floor/ceil of its target at every total (see the module docstring)."""
    sizes = [int(n) for n in sizes]
    total = sum(sizes)
    eps = 1e-9  # float noise of the targets must not move a floor or a ceil
    lower = np.minimum(np.maximum.accumulate(np.floor(targets + eps), axis=0), sizes).astype(np.int64)
    upper = np.minimum(np.maximum.accumulate(np.ceil(targets - eps), axis=0), sizes).astype(np.int64)
    # deadline[k][c]: the first total at which stratum k must have c + 1 drops
    deadline = [np.searchsorted(lower[:, k], np.arange(1, n + 1), side="left") for k, n in enumerate(sizes)]
    taken = [0] * len(sizes)
    out = np.empty(total, dtype=np.int64)
    for step in range(1, total + 1):
        best, best_key = -1, (0, 0.0)
        for k, n in enumerate(sizes):
            if taken[k] >= upper[step, k]:
                continue
            key = (int(deadline[k][taken[k]]), -float(weights[k]) * n / (taken[k] + 1))
            if best < 0 or key < best_key:
                best, best_key = k, key
        if best < 0:  # unreachable for valid targets (their ceilings sum to >= T); stay exact anyway
            best = next(k for k, n in enumerate(sizes) if taken[k] < n)
        taken[best] += 1
        out[step - 1] = best
    return out


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """``q`` in [-1/2, 1/2]: the average rank of each observed value among the observed values,
    centred; missing (NaN) values and a column with fewer than two observed values give 0."""
    values = np.asarray(values, dtype=np.float64)
    q = np.zeros(len(values))
    seen = np.flatnonzero(np.isfinite(values))
    if len(seen) < 2:
        return q
    uniq, inverse, counts = np.unique(values[seen], return_inverse=True, return_counts=True)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    average_rank = start + (counts - 1) / 2.0  # 0-based, ties share their mean rank
    q[seen] = average_rank[inverse] / (len(seen) - 1) - 0.5
    return q
