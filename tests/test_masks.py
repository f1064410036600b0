"""Missing-modality masks (datasets spec section 6): exact, nested, id-keyed, method-independent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ConfigError
from core.masks import DEFAULT_RATES, MissingSpec, drop_mask, mask_sha256, quota_sequence, stratum_labels

N = 1000
IDS = np.asarray([f"p{i:05d}" for i in range(N)])
RNG = np.random.default_rng(7)
STRATA = RNG.choice(["0", "1", "2"], size=N, p=[0.5, 0.3, 0.2])


def _dropped(keep: np.ndarray) -> np.ndarray:
    return ~keep.all(axis=1)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7, 0.95])
@pytest.mark.parametrize("pattern", ["image", "tabular", "mixed"])
def test_exact_counts_per_stratum(rate, pattern):
    keep = drop_mask(IDS, STRATA, rate, pattern, seed=0, dataset="d", split="train")
    dropped = _dropped(keep)
    assert dropped.sum() == math.floor(rate * N + 0.5)
    total = int(dropped.sum())
    for s in np.unique(STRATA):
        size = int((STRATA == s).sum())
        count = int(dropped[STRATA == s].sum())
        assert math.floor(total * size / N) <= count <= math.ceil(total * size / N)  # within quota
        assert abs(count - rate * size) < 1.5


def _strata_of(sizes: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, f"s{i}") for i, n in enumerate(sizes)])


def _counts(keep: np.ndarray, strata: np.ndarray, names: list[str]) -> list[int]:
    dropped = ~keep.all(axis=1)
    return [int(dropped[strata == s].sum()) for s in names]


GRID_RATES = (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.9)


def test_singleton_stratum_is_nested_alabama_example():
    """Largest remainder dropped the singleton of {1, 44} at 0.5 and kept it at 0.7."""
    strata = _strata_of([1, 44])
    ids = np.asarray([f"x{i}" for i in range(45)])
    for seed in range(20):
        c5 = _counts(drop_mask(ids, strata, 0.5, "image", seed, "d", "train"), strata, ["s0", "s1"])
        c7 = _counts(drop_mask(ids, strata, 0.7, "image", seed, "d", "train"), strata, ["s0", "s1"])
        assert c5[0] <= c7[0] and c5[1] <= c7[1], (seed, c5, c7)
        assert sum(c5) == math.floor(0.5 * 45 + 0.5) and sum(c7) == math.floor(0.7 * 45 + 0.5)


def test_quota_sequence_is_within_quota_and_house_monotone_on_random_strata():
    rng = np.random.default_rng(11)
    for _ in range(300):
        sizes = [int(n) for n in rng.integers(1, 61, size=rng.integers(1, 10))]
        total = sum(sizes)
        seq = quota_sequence(sizes)
        assert len(seq) == total and np.bincount(seq, minlength=len(sizes)).tolist() == sizes
        counts = np.zeros(len(sizes), dtype=np.int64)
        for t, s in enumerate(seq, start=1):
            counts[s] += 1
            quota = [t * n / total for n in sizes]
            assert all(math.floor(q) <= c <= math.ceil(q) for q, c in zip(quota, counts)), (sizes, t)


@pytest.mark.parametrize("pattern", ["image", "tabular", "mixed"])
def test_random_strata_nested_for_every_pair_of_rates(pattern):
    rng = np.random.default_rng(5)
    for trial in range(40):
        sizes = [int(n) for n in rng.integers(1, 61, size=rng.integers(1, 6))]
        strata = _strata_of(sizes)
        ids = np.asarray([f"t{trial}-{i}" for i in range(len(strata))])
        masks = {r: drop_mask(ids, strata, r, pattern, trial, "d", "val") for r in GRID_RATES}
        for a in GRID_RATES:
            for b in GRID_RATES:
                if a < b:
                    lost_a, lost_b = ~masks[a], ~masks[b]
                    # nested per modality: whatever a sample lost at a, it has lost at b too
                    assert not (lost_a & ~lost_b).any(), (sizes, a, b)
        for r, keep in masks.items():
            assert keep.any(axis=1).all()
            assert (~keep.all(axis=1)).sum() == math.floor(r * len(ids) + 0.5)


def test_multilabel_strata_are_nested():
    rng = np.random.default_rng(2)
    labels = (rng.random((150, 5)) < [0.4, 0.2, 0.1, 0.05, 0.02]).astype(np.float32)
    strata = stratum_labels(labels, "multilabel")
    ids = np.asarray([f"m{i}" for i in range(150)])
    previous = np.zeros((150, 2), bool)
    for r in GRID_RATES:
        lost = ~drop_mask(ids, strata, r, "mixed", 0, "odir", "train")
        assert not (previous & ~lost).any()
        previous = lost


def test_mixed_split_is_exact_within_each_stratum():
    keep = drop_mask(IDS, STRATA, 0.5, "mixed", 0, "d", "train")
    for s in np.unique(STRATA):
        rows = STRATA == s
        img, tab = (~keep[rows, 0]).sum(), (~keep[rows, 1]).sum()
        assert abs(int(img) - int(tab)) <= 1  # which modality is missing says nothing about the class


@pytest.mark.parametrize("pattern", ["image", "tabular", "mixed"])
def test_nested_across_rates(pattern):
    previous = np.zeros(N, bool)
    for rate in DEFAULT_RATES + (0.9,):
        dropped = _dropped(drop_mask(IDS, STRATA, rate, pattern, 0, "d", "train"))
        assert (previous & ~dropped).sum() == 0, f"a sample dropped at a lower rate is kept at {rate}"
        previous = dropped


def test_same_hash_across_calls_and_row_permutations():
    keep = drop_mask(IDS, STRATA, 0.3, "mixed", 1, "d", "test")
    again = drop_mask(IDS, STRATA, 0.3, "mixed", 1, "d", "test")
    perm = np.random.default_rng(3).permutation(N)
    permuted = drop_mask(IDS[perm], STRATA[perm], 0.3, "mixed", 1, "d", "test")
    assert mask_sha256(IDS, keep) == mask_sha256(IDS, again) == mask_sha256(IDS[perm], permuted)
    np.testing.assert_array_equal(permuted, keep[perm])


def test_mixed_never_drops_both_and_is_balanced():
    keep = drop_mask(IDS, STRATA, 0.5, "mixed", 0, "d", "train")
    assert keep.any(axis=1).all()
    img_lost, tab_lost = (~keep[:, 0]).sum(), (~keep[:, 1]).sum()
    assert img_lost + tab_lost == 500 and abs(int(img_lost) - int(tab_lost)) <= len(np.unique(STRATA))


def test_patterns_drop_only_their_modality():
    assert drop_mask(IDS, STRATA, 0.5, "image", 0, "d", "s")[:, 1].all()
    assert drop_mask(IDS, STRATA, 0.5, "tabular", 0, "d", "s")[:, 0].all()


def test_train_and_test_masks_are_independent():
    train = _dropped(drop_mask(IDS, STRATA, 0.5, "image", 0, "d", "train"))
    test = _dropped(drop_mask(IDS, STRATA, 0.5, "image", 0, "d", "test"))
    agreement = (train == test).mean()
    assert 0.4 < agreement < 0.6  # independent draws agree ~50% of the time at rate 0.5


def test_seed_and_dataset_change_the_mask():
    base = _dropped(drop_mask(IDS, STRATA, 0.3, "image", 0, "d", "train"))
    assert (base != _dropped(drop_mask(IDS, STRATA, 0.3, "image", 1, "d", "train"))).any()
    assert (base != _dropped(drop_mask(IDS, STRATA, 0.3, "image", 0, "other", "train"))).any()


def test_protocols():
    assert MissingSpec("mixed", 0.3, "both").rate_for("val") == 0.3
    assert MissingSpec("mixed", 0.3, "test_only").rate_for("train") == 0.0
    assert MissingSpec("mixed", 0.3, "test_only").rate_for("val") == 0.0
    assert MissingSpec("mixed", 0.3, "test_only").rate_for("test") == 0.3
    assert MissingSpec("mixed", 0.3, "train_only").rate_for("test") == 0.0
    assert MissingSpec("mixed", 0.3, "train_only").rate_for("val") == 0.3


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ConfigError, match="--missing-rate"):
        MissingSpec("mixed", rate, "both")


def test_unknown_pattern_is_rejected():
    with pytest.raises(ConfigError, match="--pattern"):
        MissingSpec("both_modalities", 0.1, "both")  # type: ignore[arg-type]
