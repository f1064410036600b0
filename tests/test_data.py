"""Splits, train-only normalisation, and the physical removal of masked data."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from core.contract import TabularColumn
from core.masks import MissingSpec
from core.tabular import TabularPreprocessor
from datasets.base import stratified_split
from datasets.preparation import prepare_data


def test_datasets_package_is_this_repo():
    """A top-level ``datasets`` shadows HuggingFace's; make sure ours is the one imported."""
    mod = importlib.import_module("datasets")
    assert Path(mod.__file__).resolve().parent == Path(__file__).resolve().parent.parent / "datasets"
    assert hasattr(mod, "register_dataset")


def test_stratified_split_is_stratified_disjoint_and_id_keyed():
    ids = np.asarray([f"s{i}" for i in range(1000)])
    strata = np.asarray(["a"] * 800 + ["b"] * 200)
    split = stratified_split(ids, strata, seed=0, fractions=(0.7, 0.1, 0.2))
    all_rows = np.concatenate(list(split.values()))
    assert len(all_rows) == len(set(all_rows.tolist())) == 1000
    for name, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        rows = split[name]
        assert abs(len(rows) - frac * 1000) <= 2
        assert abs((strata[rows] == "b").mean() - 0.2) < 0.02
    perm = np.random.default_rng(0).permutation(1000)
    again = stratified_split(ids[perm], strata[perm], seed=0, fractions=(0.7, 0.1, 0.2))
    assert set(ids[perm][again["test"]]) == set(ids[split["test"]])
    other = stratified_split(ids, strata, seed=1, fractions=(0.7, 0.1, 0.2))
    assert set(ids[other["test"]]) != set(ids[split["test"]])


def test_official_split_disjoint(tiny_data):
    ids = [set(s.ids.tolist()) for s in tiny_data.splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_normalisation_uses_observed_train_rows_only(tiny_dataset, tiny_table):
    spec = MissingSpec("tabular", 0.5, "both")
    data = prepare_data(tiny_dataset, tiny_table, spec, seed=0)
    train = data.splits["train"]
    observed_rows = train.rows[train.present[:, 1]]
    raw = tiny_table.numeric[observed_rows]
    z = train.tabular[train.present[:, 1]][:, :raw.shape[1]]
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    # Test statistics played no role: changing test values does not move train features.
    table2 = type(tiny_table)(**{**tiny_table.__dict__})
    table2.numeric = tiny_table.numeric.copy()
    test_rows = data.splits["test"].rows
    table2.numeric[test_rows] += 100.0
    data2 = prepare_data(tiny_dataset, table2, spec, seed=0)
    np.testing.assert_array_equal(data2.splits["train"].tabular, train.tabular)


def test_nan_imputation_and_indicator_and_unknown_category():
    cols = (TabularColumn("age", "numeric"), TabularColumn("sex", "categorical", ("F", "M")))
    pre = TabularPreprocessor(cols).fit(np.array([[1.0], [3.0], [np.nan]]), np.array([["F"], ["M"], ["F"]], object))
    assert pre.feature_names == ("age", "age__isnan", "sex=F", "sex=M")
    out, unseen = pre.transform(np.array([[np.nan], [2.0]]), np.array([["X"], ["M"]], object))
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0, 0.0])  # NaN -> train mean (z=0), unknown -> zeros
    np.testing.assert_allclose(out[1], [0.0, 0.0, 0.0, 1.0])
    assert unseen == 1


class _ExplodingImages:
    """An image source that fails if a masked image is ever requested."""

    def __init__(self, arrays, forbidden):
        self.arrays, self.forbidden = arrays, set(forbidden)

    def load(self, rows, view, train):
        bad = self.forbidden & set(np.asarray(rows).tolist())
        assert not bad, f"masked rows {sorted(bad)[:3]} were read"
        return self.arrays[view][rows]


def test_masked_modalities_are_never_read_and_are_zero(tiny_dataset, tiny_table):
    spec = MissingSpec("mixed", 0.5, "both")
    data = prepare_data(tiny_dataset, tiny_table, spec, seed=0)
    for split in data.splits.values():
        masked_rows = split.rows[~split.present[:, 0]]
        split.table = type(tiny_table)(**{**tiny_table.__dict__})
        split.table.images = _ExplodingImages(tiny_table.images.arrays, masked_rows)
        batch = split.batch(np.arange(len(split)))
        absent_img = ~batch.present[:, 0]
        assert (batch.images["image"][absent_img] == 0).all()
        assert (batch.tabular[~batch.present[:, 1]] == 0).all()
        assert batch.present.any(dim=1).all()


def test_both_missing_samples_are_excluded_from_training(tiny_dataset, tiny_table):
    table = type(tiny_table)(**{**tiny_table.__dict__})
    table.tabular_available = tiny_table.tabular_available.copy()
    train_rows = np.flatnonzero(table.split == "train")
    table.tabular_available[train_rows] = False  # no tabular record at all in train
    data = prepare_data(tiny_dataset, table, MissingSpec("image", 0.5, "both"), seed=0)
    assert data.counts["train_both_missing"] == pytest.approx(round(0.5 * len(train_rows)), abs=1)
    assert data.splits["train"].present.any(axis=1).all()
    assert len(data.splits["train"]) == len(train_rows) - data.counts["train_both_missing"]
