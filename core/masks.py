"""Missing-modality masks (datasets spec section 6): seeded, exact, nested, method-independent.

For split ``s`` and seed ``k`` every sample draws ``(u_i, v_i)`` from
``numpy.random.default_rng([k, crc32(dataset), crc32(s), crc32(id_i)])`` — the first and second
number of that stream.  The draw depends on the sample *id* only, never on row order, worker count
or device.  Within each stratum (class; for multilabel the least frequent positive label) the
samples with the smallest ``u`` are dropped; per-stratum counts use largest-remainder rounding so
the total is exactly ``round(rate * N)``.  Because the ranking does not depend on the rate, the
set dropped at 0.3 is contained in the set dropped at 0.5 (nesting).  For the ``mixed`` pattern
the dropped samples are ranked by ``v``: the lower ``image_share`` part loses the image, the rest
the tabular record; a sample never loses both.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


def largest_remainder(total: int, sizes: dict[str, int], rate: float) -> dict[str, int]:
    """Per-stratum counts summing exactly to ``total`` (quota rate*size, Hamilton rounding)."""
    quotas = {s: rate * n for s, n in sizes.items()}
    counts = {s: min(sizes[s], math.floor(q)) for s, q in quotas.items()}
    remainder = total - sum(counts.values())
    # Largest fractional part first; ties broken by stratum name for determinism.
    order = sorted(quotas, key=lambda s: (-(quotas[s] - math.floor(quotas[s])), s))
    for s in order:
        if remainder <= 0:
            break
        if counts[s] < sizes[s]:
            counts[s] += 1
            remainder -= 1
    return counts


def drop_mask(ids: np.ndarray, strata: np.ndarray, rate: float, pattern: str, seed: int,
              dataset: str, split: str, image_share: float = 0.5) -> np.ndarray:
    """(N, 2) bool *synthetic availability* for one split: False where a modality is dropped."""
    ids = np.asarray(ids).astype(str)
    keep = np.ones((len(ids), 2), dtype=bool)
    if rate <= 0 or len(ids) == 0:
        return keep
    draws = id_uniforms(ids, seed, dataset, split)
    u, v = draws[:, 0], draws[:, 1]
    total = math.floor(rate * len(ids) + 0.5)
    sizes = {s: int((strata == s).sum()) for s in sorted(set(strata.tolist()))}
    counts = largest_remainder(total, sizes, rate)
    dropped = []
    for s, c in counts.items():
        rows = np.flatnonzero(strata == s)
        # Rank by u; ties (never in practice) by id so the result is order-free.
        order = np.lexsort((ids[rows], u[rows]))
        dropped.extend(rows[order[:c]].tolist())
    dropped_arr = np.asarray(sorted(dropped), dtype=np.int64)
    if pattern == "image":
        keep[dropped_arr, IMAGE] = False
    elif pattern == "tabular":
        keep[dropped_arr, TABULAR] = False
    else:
        order = dropped_arr[np.lexsort((ids[dropped_arr], v[dropped_arr]))]
        n_img = math.floor(image_share * len(order) + 0.5)
        keep[order[:n_img], IMAGE] = False
        keep[order[n_img:], TABULAR] = False
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
