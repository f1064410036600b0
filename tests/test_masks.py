"""Missing-modality masks (datasets spec section 6): exact, nested, id-keyed, method-independent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ConfigError
from core.masks import DEFAULT_RATES, MissingSpec, drop_mask, largest_remainder, mask_sha256

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
    sizes = {s: int((STRATA == s).sum()) for s in np.unique(STRATA)}
    expected = largest_remainder(int(dropped.sum()), sizes, rate)
    for s, count in expected.items():
        assert dropped[STRATA == s].sum() == count
        assert abs(count - rate * sizes[s]) < 1.0  # within one of the exact quota


def test_largest_remainder_rounding():
    assert largest_remainder(3, {"a": 3, "b": 7}, 0.3) == {"a": 1, "b": 2}
    assert sum(largest_remainder(5, {"a": 5, "b": 5, "c": 7}, 5 / 17).values()) == 5


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
    assert img_lost + tab_lost == 500 and img_lost == tab_lost == 250


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
