"""The synthetic dataset and its oracle (datasets spec section 7, correctness checks)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from core.errors import ConfigError
from datasets import create_dataset
from datasets.synthetic import C_OFFSET, template


def _split(table, name):
    return np.flatnonzero(table.split == name)


def test_closed_form_matches_monte_carlo():
    ds = create_dataset("synthetic", n_train=10, n_val=10, n_test=10, mc_samples=400_000)
    oracle = ds.oracle()
    closed = oracle.closed_form()
    # rate 0 goes through the closed form; force MC with a shift-free rate of 0 by a tiny hack:
    mc_fused = oracle.population_auc("image", 1e-9, seed=1)
    assert abs(closed["fused"] - mc_fused) < 0.005
    assert abs(closed["image"] - oracle.population_auc("tabular", 1 - 1e-9, seed=2)) < 0.005
    assert abs(closed["tabular"] - oracle.population_auc("image", 1 - 1e-9, seed=3)) < 0.005
    assert abs(closed["fused"] - 0.860) < 0.002 and abs(closed["image"] - 0.80) < 0.002


def test_redundant_preset_closed_form():
    oracle = create_dataset("synthetic", preset="redundant", n_train=4, n_val=4, n_test=4).oracle()
    closed = oracle.closed_form()
    assert abs(closed["fused"] - closed["image"]) < 0.01  # fused ~ image alone when rho = 0.8


def test_matched_filter_is_the_oracle_image_statistic():
    ds = create_dataset("synthetic", n_train=50, n_val=10, n_test=400)
    table = ds.load_table()
    test = _split(table, "test")
    images = table.images.arrays["image"][test].reshape(len(test), -1) - C_OFFSET
    matched = images @ template(32).ravel()
    np.testing.assert_allclose(matched, table.extras["latent_a"][test], atol=1e-4)
    present = np.tile([True, False], (len(test), 1))
    oracle_auc = roc_auc_score(table.labels[test], ds.oracle().scores(table, test, present)[:, 1])
    assert oracle_auc == pytest.approx(roc_auc_score(table.labels[test], matched), abs=1e-9)


def test_logistic_regression_reaches_tabular_bayes_auc():
    ds = create_dataset("synthetic")
    table = ds.load_table()
    tr, te = _split(table, "train"), _split(table, "test")
    model = LogisticRegression(max_iter=1000).fit(table.numeric[tr], table.labels[tr])
    auc = roc_auc_score(table.labels[te], model.predict_proba(table.numeric[te])[:, 1])
    assert auc >= ds.oracle().closed_form()["tabular"] - 0.03


def test_noise_image_is_uninformative():
    ds = create_dataset("synthetic", preset="noise_image", n_train=1000, n_val=10, n_test=1000)
    table = ds.load_table()
    tr, te = _split(table, "train"), _split(table, "test")
    x = table.images.arrays["image"].reshape(len(table.ids), -1)
    model = LogisticRegression(C=0.01, max_iter=500).fit(x[tr], table.labels[tr])
    auc = roc_auc_score(table.labels[te], model.predict_proba(x[te])[:, 1])
    assert abs(auc - 0.5) <= 0.04


def test_same_seed_same_arrays_bit_for_bit(tmp_path):
    a = create_dataset("synthetic", n_train=30, n_val=5, n_test=5).load_table()
    b = create_dataset("synthetic", n_train=30, n_val=5, n_test=5, cache_dir=str(tmp_path)).load_table()
    c = create_dataset("synthetic", n_train=30, n_val=5, n_test=5, cache_dir=str(tmp_path)).load_table()  # from cache
    for t in (b, c):
        np.testing.assert_array_equal(a.images.arrays["image"], t.images.arrays["image"])
        np.testing.assert_array_equal(a.numeric, t.numeric)
        np.testing.assert_array_equal(a.labels, t.labels)
    assert list(tmp_path.glob("synthetic_*.npz"))
    d = create_dataset("synthetic", n_train=30, n_val=5, n_test=5, seed=1).load_table()
    assert not np.array_equal(a.numeric, d.numeric)


def test_concurrent_cache_writers_never_share_a_temporary_file(tmp_path):
    """Local workers may generate the same table at once: each writes its own temporary file and
    renames it into place, so every writer succeeds, the cache holds one valid file, and nothing
    temporary is left behind (a shared temporary name lost the race: the loser's rename failed)."""
    def load(_: int) -> np.ndarray:
        return create_dataset("synthetic", n_train=400, n_val=5, n_test=5, cache_dir=str(tmp_path)).load_table().numeric

    with ThreadPoolExecutor(max_workers=6) as pool:
        tables = list(pool.map(load, range(12)))
    for t in tables[1:]:
        np.testing.assert_array_equal(tables[0], t)
    assert len(list(tmp_path.glob("synthetic_*.npz"))) == 1
    assert not list(tmp_path.glob("*.tmp*"))


def test_shift_oracle_uses_the_mixture():
    ds = create_dataset("synthetic", shift=1, n_train=10, n_val=10, n_test=600, mc_samples=20_000)
    table = ds.load_table()
    test = _split(table, "test")
    oracle = ds.oracle()
    present = np.ones((len(test), 2), bool)
    auc_test = roc_auc_score(table.labels[test], oracle.scores(table, test, present)[:, 1])
    pop = oracle.population_auc("mixed", 0.0)
    assert abs(auc_test - pop) < 0.05  # the empirical oracle AUC matches the population value
    assert pop < oracle.closed_form()["fused"] + 0.005  # the nuisance can only cost information


def test_informative_categoricals_add_information():
    base = create_dataset("synthetic", n_train=4, n_val=4, n_test=4, mc_samples=50_000).oracle()
    informative = create_dataset("synthetic", informative_cat=3.0, n_train=4, n_val=4, n_test=4,
                                 mc_samples=50_000).oracle()
    assert informative.population_auc("mixed", 0.0) > base.population_auc("mixed", 1e-9) + 0.005


@pytest.mark.parametrize("options, key", [({"image_size": 48}, "image_size"), ({"n_classes": 3}, "n_classes"),
                                          ({"preset": "nope"}, "preset"), ({"d_imgg": 1.0}, "d_imgg")])
def test_bad_options_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        create_dataset("synthetic", **options)
