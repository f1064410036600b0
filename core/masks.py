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

**Mechanisms** (scenarios spec A) change *which* samples come first, never the counts' exactness
or the nesting (the drop sequence still does not depend on the rate):

* ``mcar``: as above.
* ``mar``: within a stratum samples are ranked by ``u ** exp(s * q)`` (computed as
  ``exp(s * q) * log u``), ``q`` in [-1/2, 1/2] the centred average rank of the ``mar_column`` value
  among the split's observed values (missing -> 0): high values go first; strata interleave as for
  ``mcar``, so per-class counts are exactly as for ``mcar``.
* ``mnar``: strata are the classes; within one, order by ``u``; class ``k``'s target count at
  total ``T`` is ``n_k * mnar_class_rates(T / N, s, n)[k]`` (weight ``n_k * w_k``, capped at
  ``n_k``).  The next drop goes to a stratum below its upper target (ceil), the one whose lower
  target (floor) would be violated soonest (earliest deadline; ties: the quota method's priority
  ``n_k w_k / (dropped + 1)``).  Targets are non-decreasing in ``T`` and sum to ``T``, so every
  interval of totals has room for the drops it forces and earliest-deadline-first never misses
  one: every class count stays within floor/ceil of its target at *every* total, and the sequence
  is nested by construction.  With equal weights (``s = 0``, one class) it is the ``mcar`` quota
  sequence itself.  Multilabel tasks have no class score (the stratum is a label, not the
  class), so callers use ``mcar`` for them (``datasets.preparation`` does, see ``mask_mechanism``).
"""
from __future__ import annotations

import hashlib
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from core.errors import ConfigError
from core.mechanisms import centred_ranks, weighted_quota_sequence

Pattern = Literal["image", "tabular", "mixed"]
Protocol = Literal["both", "test_only", "train_only"]
PATTERNS: tuple[str, ...] = ("image", "tabular", "mixed")
PROTOCOLS: tuple[str, ...] = ("both", "test_only", "train_only")
MECHANISMS: tuple[str, ...] = ("mcar", "mar", "mnar")
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
    mechanism: str = "mcar"   # train and validation masks (scenarios spec A)
    strength: float = 1.0     # s >= 0 of mar / mnar
    mar_column: str | None = None  # mar: the numeric tabular column that decides the order
    test_mechanism: str | None = None  # test masks; None = ``mechanism`` (mechanism-shift protocol)

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"--pattern: {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol: {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if not (0.0 <= float(self.rate) < 1.0) or math.isnan(self.rate):
            raise ConfigError(f"--missing-rate: {self.rate} is outside [0, 1)")
        if not (0.0 <= self.image_share <= 1.0):
            raise ConfigError(f"missing.image_share: {self.image_share} is outside [0, 1]")
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"--mechanism (missing.mechanism): {self.mechanism!r} is not one of "
                              f"{', '.join(MECHANISMS)}")
        if self.test_mechanism is not None and self.test_mechanism not in MECHANISMS:
            raise ConfigError(f"--test-mechanism (missing.test_mechanism): {self.test_mechanism!r} is not one of "
                              f"{', '.join(MECHANISMS)}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not math.isfinite(self.strength) or self.strength < 0:
            raise ConfigError(f"--strength (missing.strength): {self.strength!r} is not a finite number >= 0")
        if "mar" in self.mechanisms() and not self.mar_column:
            raise ConfigError("--mar-column (missing.mar_column): required for mechanism 'mar' "
                              "(the numeric tabular column that decides which samples lose a modality)")

    def mechanism_for(self, split: str) -> str:
        """Train and validation masks use ``mechanism``, the test mask ``test_mechanism`` (the
        mechanism-shift protocol: a missingness policy that changes at deployment)."""
        if split == "test" and self.test_mechanism is not None:
            return self.test_mechanism
        return self.mechanism

    def mechanisms(self) -> tuple[str, str]:
        """(train/val mechanism, test mechanism)."""
        return self.mechanism, self.mechanism_for("test")

    def is_plain_mcar(self) -> bool:
        return self.mechanisms() == ("mcar", "mcar")

    @property
    def mechanism_label(self) -> str:
        """"" for plain mcar (headings as before), else e.g. ``mnar(s=1.5)`` or ``train ... -> test ...``."""
        return mechanism_label(*self.mechanisms(), self.strength, self.mar_column)

    def identity(self) -> dict[str, object]:
        """What of the spec changes a mask: mechanism fields only when a split is not mcar (so
        plain-mcar identities, and run keys, are those of before mechanisms existed, and the
        strength of an mcar run, which changes nothing, is not part of it)."""
        out: dict[str, object] = {"pattern": self.pattern, "rate": self.rate, "protocol": self.protocol,
                                  "image_share": self.image_share}  # as stored: the keys of before
        if not self.is_plain_mcar():
            train, test = self.mechanisms()
            out.update(mechanism=train, test_mechanism=test, strength=float(self.strength))
            if "mar" in (train, test):
                out["mar_column"] = self.mar_column
        return out

    def rate_for(self, split: str) -> float:
        """Validation always uses the training rate (spec section 6)."""
        if self.protocol == "both":
            return self.rate
        if self.protocol == "test_only":
            return self.rate if split == "test" else 0.0
        return 0.0 if split == "test" else self.rate

    @property
    def label(self) -> str:
        base = f"{self.pattern}/{self.protocol}/{self.rate:g}"
        return f"{base} {self.mechanism_label}" if self.mechanism_label else base


def mechanism_label(train: str, test: str, strength: float, mar_column: str | None = None) -> str:
    """How labels and leaderboard headings name the mechanism(s): "" for plain mcar (headings as
    before mechanisms existed), ``mnar(s=1.5)``, ``mar(age, s=1)``, or ``train A -> test B`` for the
    mechanism-shift protocol."""
    def text(mechanism: str) -> str:
        if mechanism == "mcar":
            return "mcar"
        column = f"{mar_column}, " if mechanism == "mar" else ""
        return f"{mechanism}({column}s={float(strength):g})"

    if (train, test) == ("mcar", "mcar"):
        return ""
    return text(train) if train == test else f"train {text(train)} -> test {text(test)}"


def class_scores(n_classes: int) -> np.ndarray:
    """The fixed centred class score ``z_k`` of the ``mnar`` mechanism (scenarios spec A): evenly
    spaced in [-1/2, 1/2], so for a binary task z = (-1/2, +1/2) and positives (class 1) lose a
    modality more often when the strength is positive."""
    if n_classes < 2:
        return np.zeros(max(n_classes, 0))
    return np.arange(n_classes) / (n_classes - 1) - 0.5


def mnar_class_rates(rate: float, strength: float, shares: Sequence[float]) -> np.ndarray:
    """Per-class drop rates of the label-dependent mechanism: ``r_k = r * w_k / sum_j pi_j w_j``
    with ``w_k = exp(strength * z_k)``; a rate above 1 is capped at 1 and the other classes'
    rates are raised (same ratio between them) until ``sum_k pi_k r_k = r`` again.

    ``shares`` are the class shares ``pi_k`` (they need not sum to 1; they are normalised).  This
    is the population definition; the masks realise it with exact integer counts, and the Bayes
    oracle's pattern term uses it (or the realised per-class rates of a finite split).
    """
    pi = np.asarray(shares, dtype=np.float64)
    pi = pi / pi.sum()
    w = np.exp(float(strength) * class_scores(len(pi)))
    capped = np.zeros(len(pi), dtype=bool)
    out = np.zeros(len(pi))
    for _ in range(len(pi) + 1):  # water-filling: at most one new capped class per pass
        free = ~capped
        budget = rate - pi[capped].sum()
        scale = budget / max((pi[free] * w[free]).sum(), 1e-300)
        out = np.where(capped, 1.0, scale * w)
        over = free & (out > 1.0)
        if not over.any():
            break
        capped |= over
    return np.clip(out, 0.0, 1.0)


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


def mnar_targets(sizes: Sequence[int], classes: Sequence[int], n_classes: int, strength: float) -> np.ndarray:
    """(N + 1, K) real-valued target drop count of each stratum (class ``classes[k]``) at every
    total ``T = 0..N``: ``n_k * mnar_class_rates(T / N, strength, class sizes)``."""
    sizes_a = np.asarray(sizes, dtype=np.float64)
    total = int(sizes_a.sum())
    shares = np.zeros(max(int(n_classes), 1))
    shares[list(classes)] = sizes_a
    rates = np.stack([mnar_class_rates(t / total, strength, shares) for t in range(total + 1)])
    return rates[:, list(classes)] * sizes_a


def stratum_class(name: str, n_classes: int | None) -> int:
    """The class index of an mnar stratum (its name); anything else is a caller error."""
    if not name.isdigit() or (n_classes is not None and int(name) >= n_classes):
        raise ValueError(f"mechanism 'mnar' needs class strata 0..n_classes-1, got stratum {name!r} "
                         f"(multilabel tasks use mcar: see mask_mechanism)")
    return int(name)


def drop_order(ids: np.ndarray, strata: np.ndarray, seed: int, dataset: str, split: str,
               mechanism: str = "mcar", strength: float = 1.0, mar_values: np.ndarray | None = None,
               n_classes: int | None = None) -> np.ndarray:
    """Rows in the order they lose a modality as the rate grows (the first ``T`` are dropped at
    ``T`` drops): within a stratum by increasing ``u`` (``mar``: ``u ** exp(s q)``), strata
    interleaved by the quota method (``mnar``: its class-weighted form).  ``mar_values`` are the
    ``mar`` column's raw values per row; ``n_classes`` (``mnar``) defaults to the largest class + 1."""
    ids = np.asarray(ids).astype(str)
    strata = np.asarray(strata).astype(str)
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown missingness mechanism {mechanism!r}; known: {', '.join(MECHANISMS)}")
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    u = id_uniforms(ids, seed, dataset, split)[:, 0]
    key = u
    if mechanism == "mar":
        if mar_values is None or len(mar_values) != len(ids):
            raise ValueError("mechanism 'mar' needs the mar column's value of every row (mar_values)")
        key = np.exp(float(strength) * centred_ranks(mar_values)) * np.log(np.maximum(u, 1e-300))
    names = sorted(set(strata.tolist()))
    # Rank by the key; ties (never in practice) by id so the result is order-free.
    queues = [rows[np.lexsort((ids[rows], key[rows]))] for rows in (np.flatnonzero(strata == s) for s in names)]
    sizes = [len(q) for q in queues]
    sequence = quota_sequence(sizes)
    if mechanism == "mnar":
        classes = [stratum_class(name, n_classes) for name in names]
        n = int(n_classes) if n_classes is not None else max(max(classes) + 1, 2)
        weights = np.exp(float(strength) * class_scores(n))[classes]
        if not np.allclose(weights, weights[0], rtol=0.0, atol=0.0):  # equal weights: the mcar sequence
            sequence = weighted_quota_sequence(sizes, weights, mnar_targets(sizes, classes, n, strength))
    cursor = [0] * len(names)
    order = np.empty(len(ids), dtype=np.int64)
    for step, s in enumerate(sequence):
        order[step] = queues[s][cursor[s]]
        cursor[s] += 1
    return order


def mask_mechanism(mechanism: str, labels: np.ndarray) -> str:
    """The mechanism a split's mask is drawn with: ``mnar`` of a multilabel task is ``mcar`` (its
    strata are labels, which have no class score; documented in the module docstring)."""
    return "mcar" if mechanism == "mnar" and np.asarray(labels).ndim > 1 else mechanism


def drop_mask(ids: np.ndarray, strata: np.ndarray, rate: float, pattern: str, seed: int,
              dataset: str, split: str, image_share: float = 0.5, mechanism: str = "mcar",
              strength: float = 1.0, mar_values: np.ndarray | None = None,
              n_classes: int | None = None) -> np.ndarray:
    """(N, 2) bool *synthetic availability* for one split: False where a modality is dropped.
    Only whole modalities are dropped, so a kept tabular record keeps its ``mar`` column."""
    ids = np.asarray(ids).astype(str)
    keep = np.ones((len(ids), 2), dtype=bool)
    if rate <= 0 or len(ids) == 0:
        return keep
    total = math.floor(rate * len(ids) + 0.5)
    dropped = drop_order(ids, strata, seed, dataset, split, mechanism, strength, mar_values, n_classes)[:total]
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


def mask_file_part(spec: MissingSpec, split: str) -> str:
    """``""`` for mcar, ``_mnar1.5``, ``_mar1-<column>``: what of the mechanism names a mask file."""
    mechanism = spec.mechanism_for(split)
    if mechanism == "mcar":
        return ""
    column = "-" + re.sub(r"[^A-Za-z0-9.]+", "-", str(spec.mar_column)) if mechanism == "mar" else ""
    return f"_{mechanism}{spec.strength:g}{column}"


def persist_mask(directory: Path, dataset: str, split: str, spec: MissingSpec, seed: int,
                 ids: np.ndarray, keep: np.ndarray) -> tuple[Path, str]:
    """Write ``<dataset>_<split>_<pattern>_<rate>[_<mechanism>]_seed<k>.csv`` and its ``.sha256``;
    atomic.  The mechanism part is absent for mcar (names as before mechanisms existed)."""
    directory.mkdir(parents=True, exist_ok=True)
    rate = spec.rate_for(split)
    path = directory / f"{dataset}_{split}_{spec.pattern}_{rate:g}{mask_file_part(spec, split)}_seed{seed}.csv"
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
