"""Seeded, id-keyed splits: stratified by sample, or by whole groups (patient, lesion).

Both rank by the same hash of ``(seed, id)`` (``core.masks.id_uniforms``, namespace ``split``), so a
split never depends on row order.  :func:`stratified_split` is the historical per-sample split
(unchanged: datasets without groups split exactly as before); :func:`grouped_split` assigns whole
groups, so no patient or lesion is in two splits; :func:`seeded_split` picks one (groups of one
sample each take the per-sample split).  :func:`check_group_split` is the guard every split passes
through (official splits included).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from core.contract import SPLITS
from core.errors import DatasetLayoutError
from core.masks import id_uniforms

Fractions = tuple[float, float, float]


def stratified_split(ids: np.ndarray, strata: np.ndarray, seed: int,
                     fractions: Fractions) -> dict[str, np.ndarray]:
    """Seeded, id-keyed stratified split: within each stratum, rank by a hash of (seed, id)."""
    u = id_uniforms(ids, seed=seed, namespace="split", split="all")[:, 0]
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for stratum in sorted(set(strata.tolist())):
        rows = np.flatnonzero(strata == stratum)
        rows = rows[np.argsort(u[rows], kind="stable")]
        n = len(rows)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        out["train"] += rows[:n_train].tolist()
        out["val"] += rows[n_train:n_train + n_val].tolist()
        out["test"] += rows[n_train + n_val:].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}


def group_strata(groups: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group names, row -> group index, group sizes, group stratum = its members' majority stratum).

    A tie between strata goes to the first in sorted order, so the result is deterministic."""
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    counts: list[Counter] = [Counter() for _ in names]
    for g, s in zip(inverse.tolist(), np.asarray(strata).astype(str).tolist()):
        counts[g][s] += 1
    majority = np.asarray([min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for c in counts])
    return names, inverse, np.bincount(inverse, minlength=len(names)), majority


def grouped_split(groups: np.ndarray, strata: np.ndarray, seed: int, fractions: Fractions) -> dict[str, np.ndarray]:
    """Seeded, id-keyed split of whole groups, stratified by each group's majority stratum.

    Within a stratum, groups are ranked by the hash of (seed, group id) and cut where the running
    *sample* count crosses the wanted counts: a group goes to the split its middle sample falls in
    (midpoint rule).  What a stratum gets above or below ``fractions`` is carried to the next one
    (strata in sorted order), so the overall sample shares stay close to ``fractions`` even when a
    stratum's val share is smaller than one group.
    """
    names, inverse, sizes, majority = group_strata(groups, strata)
    u = id_uniforms(names, seed=seed, namespace="split", split="all")[:, 0]
    assigned = np.empty(len(names), dtype=np.int64)
    carry = np.zeros(2)
    for stratum in sorted(set(majority.tolist())):
        members = np.flatnonzero(majority == stratum)
        members = members[np.argsort(u[members], kind="stable")]
        want = np.asarray(fractions[:2]) * float(sizes[members].sum()) + carry
        middle = np.cumsum(sizes[members]) - sizes[members] / 2.0
        assigned[members] = np.where(middle < want[0], 0, np.where(middle < want[0] + want[1], 1, 2))
        carry = want - [sizes[members][assigned[members] == k].sum() for k in (0, 1)]
    per_row = assigned[inverse]
    return {s: np.flatnonzero(per_row == k).astype(np.int64) for k, s in enumerate(SPLITS)}


def seeded_split(ids: np.ndarray, strata: np.ndarray, seed: int, fractions: Fractions,
                 groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-sample stratified split, or the grouped one when the rows carry groups.

    Groups of one sample each (ODIR: a row is a patient) need no grouping: the per-sample split is
    used, so declaring such a group changes nothing."""
    if groups is None or len(np.unique(np.asarray(groups).astype(str))) == len(groups):
        return stratified_split(ids, strata, seed, fractions)
    return grouped_split(groups, strata, seed, fractions)


def check_group_split(dataset: str, groups: np.ndarray | None, parts: dict[str, np.ndarray],
                      what: str = "the split") -> None:
    """DatasetLayoutError if one group (patient, lesion) has rows in two splits."""
    if groups is None:
        return
    groups = np.asarray(groups).astype(str)
    owner: dict[str, str] = {}
    for split in SPLITS:
        for group in sorted(set(groups[np.asarray(parts.get(split, ()), dtype=np.int64)].tolist())):
            if owner.setdefault(group, split) != split:
                raise DatasetLayoutError(
                    f"dataset '{dataset}': {what} puts group '{group}' in both '{owner[group]}' and '{split}'; "
                    "the rows of one patient/lesion must stay in one split (fix the split column or folds, "
                    "or choose another group)")
