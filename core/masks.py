"""Missing-modality masks (datasets spec section 6): seeded, exact, nested, method-independent.

For split ``s`` and seed ``k`` every sample draws ``u_i`` from
``numpy.random.default_rng([k, crc32(dataset), crc32(s), crc32(id_i)])`` (the first number of that
stream): it depends on the sample *id* only, never on row order, worker count or device.

A split's masks for every rate come from one **drop sequence**: the order in which samples lose
a modality as the rate grows.  Within a stratum (class; for multilabel the least frequent positive
label) samples are taken by increasing ``u``; which stratum gives the next sample is decided by the
Balinski–Young *quota method* of apportionment (the next drop goes to the stratum with the largest
``size / (dropped + 1)`` among those still below their upper quota).  So, for every rate, exactly
``round(rate * N)`` samples are dropped, each stratum's count is within one of ``rate * size``
(floor or ceil of its quota), and every stratum's count is non-decreasing in the rate: the masks
are **nested** for every pair of rates, even for strata of one sample (largest-remainder rounding
is not: with strata {1, 44} it drops the singleton at 0.5 and keeps it at 0.7).  For ``mixed``,
the ``j``-th sample dropped from a stratum loses its image when ``round(image_share * j)`` grows
at ``j`` and its tabular record otherwise: the split between the modalities is exact within each
stratum (so which modality is missing says nothing about the class) and a sample keeps losing the
same modality as the rate grows.  A sample never loses both.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from core.errors import ConfigError

Pattern = Literal["image", "tabular", "mixed"]
Protocol = Literal["both", "test_only", "train_only"]
PATTERNS: tuple[str, ...] = ("image", "tabular", "mixed")
PROTOCOLS: tuple[str, ...] = ("both", "test_only", "train_only")
DEFAULT_RATES: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7)
IMAGE, TABULAR = 0, 1  # columns of every presence array


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def id_uniforms(ids: np.ndarray, seed: int, namespace: str, split: str) -> np.ndarray:
    """(N, 2) uniforms per id from the id-keyed stream; independent of row order."""
    ns, sp = _crc(namespace), _crc(split)
    out = np.empty((len(ids), 2), dtype=np.float64)
    for i, sample_id in enumerate(ids):
        out[i] = np.random.default_rng([int(seed), ns, sp, _crc(str(sample_id))]).random(2)
    return out


@dataclass(frozen=True)
class MissingSpec:
    """Which modality may go missing, at what rate, in which splits."""

    pattern: Pattern = "mixed"
    rate: float = 0.0
    protocol: Protocol = "both"
    image_share: float = 0.5  # mixed pattern: share of dropped samples that lose the image

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"--pattern: {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol: {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if not (0.0 <= float(self.rate) < 1.0) or math.isnan(self.rate):
            raise ConfigError(f"--missing-rate: {self.rate} is outside [0, 1)")
        if not (0.0 <= self.image_share <= 1.0):
            raise ConfigError(f"missing.image_share: {self.image_share} is outside [0, 1]")

    def rate_for(self, split: str) -> float:
        """Validation always uses the training rate (spec section 6)."""
        if self.protocol == "both":
            return self.rate
        if self.protocol == "test_only":
            return self.rate if split == "test" else 0.0
        return 0.0 if split == "test" else self.rate

    @property
    def label(self) -> str:
        return f"{self.pattern}/{self.protocol}/{self.rate:g}"


def quota_sequence(sizes: Sequence[int]) -> np.ndarray:
    """The stratum of each successive drop, for a total of 1..sum(sizes) drops (quota method).

    At total ``T`` a stratum may take the next drop only while ``dropped < ceil(T * size / N)``
    (upper quota); among those, the one with the largest ``size / (dropped + 1)`` takes it (ties:
    the first stratum).  House-monotone by construction and within quota (Balinski & Young 1975),
    which the property tests check over random strata of sizes 1..60.
    """
    sizes = [int(n) for n in sizes]
    total = sum(sizes)
    taken = [0] * len(sizes)
    out = np.empty(total, dtype=np.int64)
    for step in range(1, total + 1):
        best = -1
        for s, n in enumerate(sizes):
            if taken[s] * total >= step * n:  # would exceed the upper quota at this total
                continue
            # n_s / (c_s + 1) > n_b / (c_b + 1), in integers
            if best < 0 or n * (taken[best] + 1) > sizes[best] * (taken[s] + 1):
                best = s
        taken[best] += 1
        out[step - 1] = best
    return out


def drop_order(ids: np.ndarray, strata: np.ndarray, seed: int, dataset: str, split: str) -> np.ndarray:
    """Rows in the order they lose a modality as the rate grows (the first ``T`` are dropped at
    ``T`` drops): by increasing ``u`` within a stratum, strata interleaved by the quota method."""
    ids = np.asarray(ids).astype(str)
    strata = np.asarray(strata).astype(str)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    u = id_uniforms(ids, seed, dataset, split)[:, 0]
    names = sorted(set(strata.tolist()))
    # Rank by u; ties (never in practice) by id so the result is order-free.
    queues = [rows[np.lexsort((ids[rows], u[rows]))] for rows in (np.flatnonzero(strata == s) for s in names)]
    cursor = [0] * len(names)
    order = np.empty(len(ids), dtype=np.int64)
    for step, s in enumerate(quota_sequence([len(q) for q in queues])):
        order[step] = queues[s][cursor[s]]
        cursor[s] += 1
    return order


def drop_mask(ids: np.ndarray, strata: np.ndarray, rate: float, pattern: str, seed: int,
              dataset: str, split: str, image_share: float = 0.5) -> np.ndarray:
    """(N, 2) bool *synthetic availability* for one split: False where a modality is dropped."""
    ids = np.asarray(ids).astype(str)
    keep = np.ones((len(ids), 2), dtype=bool)
    if rate <= 0 or len(ids) == 0:
        return keep
    total = math.floor(rate * len(ids) + 0.5)
    dropped = drop_order(ids, strata, seed, dataset, split)[:total]
    if pattern == "image":
        keep[dropped, IMAGE] = False
    elif pattern == "tabular":
        keep[dropped, TABULAR] = False
    else:
        strata = np.asarray(strata).astype(str)
        seen: dict[str, int] = {}
        for row in dropped:  # the j-th drop of its stratum: image iff round(share * j) steps up
            j = seen[strata[row]] = seen.get(strata[row], 0) + 1
            loses_image = math.floor(image_share * j + 0.5) > math.floor(image_share * (j - 1) + 0.5)
            keep[row, IMAGE if loses_image else TABULAR] = False
    return keep


def mask_sha256(ids: np.ndarray, keep: np.ndarray) -> str:
    """Hash of the mask as persisted (rows sorted by id), so it is independent of row order."""
    return hashlib.sha256(mask_csv(ids, keep).encode("utf-8")).hexdigest()


def mask_csv(ids: np.ndarray, keep: np.ndarray) -> str:
    order = np.argsort(np.asarray(ids).astype(str), kind="stable")
    lines = ["id,image,tabular"]
    lines += [f"{ids[i]},{int(keep[i, IMAGE])},{int(keep[i, TABULAR])}" for i in order]
    return "\n".join(lines) + "\n"


def persist_mask(directory: Path, dataset: str, split: str, spec: MissingSpec, seed: int,
                 ids: np.ndarray, keep: np.ndarray) -> tuple[Path, str]:
    """Write ``<dataset>_<split>_<pattern>_<rate>_seed<k>.csv`` and its ``.sha256``; atomic."""
    directory.mkdir(parents=True, exist_ok=True)
    rate = spec.rate_for(split)
    path = directory / f"{dataset}_{split}_{spec.pattern}_{rate:g}_seed{seed}.csv"
    text = mask_csv(ids, keep)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if path.exists() and path.read_text() == text:
        return path, digest
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    path.with_suffix(".csv.sha256").write_text(f"{digest}  {path.name}\n")
    return path, digest


def stratum_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Stratum per sample: the class; for multilabel the least frequent positive label or 'none'."""
    if labels.ndim == 1:
        return np.asarray([str(int(v)) for v in labels])
    freq = labels.sum(axis=0)
    out = []
    for row in labels:
        pos = np.flatnonzero(row > 0.5)
        out.append("none" if len(pos) == 0 else str(int(pos[np.argmin(freq[pos])])))
    return np.asarray(out)
