"""Synthetic scenarios (scenarios spec B): exact oracles, population Bayes AUC, the ceiling."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from benchmark.cells.evaluate import oracle_predictions, oracle_reference
from core.errors import ConfigError
from core.masks import IMAGE, TABULAR, MissingSpec, drop_mask, mnar_class_rates, stratum_labels
from core.metrics import delong
from datasets import create_dataset
from datasets.synthetic import C_OFFSET, template
from datasets.synthetic_oracle import (class_drop_rates, population_pattern_log_odds,
                                       realised_pattern_log_odds)

TINY = dict(n_train=4, n_val=4, n_test=4)
CLOSED = [("balanced", {}), ("dominant", {}), ("redundant_hard", {}), ("informative_missing", {}),
          ("interaction", {"interaction_lambda": 0.0}), ("interaction", {})]
ALL = CLOSED + [("interaction", {"interaction_lambda": 0.5})]
EPS = 1e-9  # a rate that drops nothing (per-class rounding) but takes the Monte Carlo path


def _oracle(scenario: str, mc: int = 20_000, **extra):
    return create_dataset("synthetic", scenario=scenario, mc_samples=mc, **TINY, **extra).oracle()


def _split(table, name):
    return np.flatnonzero(table.split == name)


@pytest.mark.parametrize("scenario, extra", CLOSED)
def test_closed_form_matches_monte_carlo(scenario, extra):
    oracle = _oracle(scenario, mc=100_000, **extra)
    closed = oracle.closed_form()
    exact = oracle.population("mixed", 0.0)
    mc = oracle.population("mixed", EPS, seed=7)
    assert exact.exact and not mc.exact and mc.bayes_se > 0
    assert abs(mc.bayes - closed["fused"]) < 3 * mc.bayes_se + 1e-3
    assert abs(mc.ceiling - closed["ceiling"]) < 3 * mc.ceiling_se + 1e-3
    assert (exact.bayes, exact.ceiling) == (closed["fused"], closed["ceiling"])
    # One modality left (every sample loses the other): the marginal closed forms.
    img = oracle.population("tabular", 1 - EPS, seed=8)
    tab = oracle.population("image", 1 - EPS, seed=9)
    assert abs(img.bayes - closed["image"]) < 3 * img.bayes_se + 1e-3
    assert abs(tab.bayes - closed["tabular"]) < 3 * tab.bayes_se + 1e-3


def test_interaction_lambda_one_closed_forms():
    oracle = _oracle("interaction")
    d_img, d_tab, _ = oracle.o.resolved()
    closed = oracle.closed_form()
    assert closed["fused"] == pytest.approx(norm.cdf(np.sqrt(d_img ** 2 + d_tab ** 2) / np.sqrt(2)))
    assert closed["ceiling"] == pytest.approx(norm.cdf(d_tab / np.sqrt(2))) == closed["tabular"]
    assert oracle.population_auc("mixed", 0.0) == closed["fused"]
    assert oracle.population_ceiling_auc("mixed", 0.0) == closed["ceiling"]
    # The image alone is worthless: its marginal LLR is identically 0 (the s = +-1 mixture).
    t = np.random.default_rng(0).normal(size=(50, 1)) * 3
    llr = oracle.llr(t, np.zeros(50), np.zeros((50, 0), np.int64), np.tile([True, False], (50, 1)))
    np.testing.assert_allclose(llr, 0.0, atol=1e-12)
    assert oracle.population_auc("tabular", 1 - EPS) == pytest.approx(0.5, abs=1e-9)


def test_interaction_lambda_zero_is_balanced():
    bal, inter = _oracle("balanced"), _oracle("interaction", interaction_lambda=0.0)
    rng = np.random.default_rng(1)
    n = 400
    t, b = rng.normal(size=(n, 1)) * 2, rng.normal(size=n) * 2
    cat, context = np.zeros((n, 0), np.int64), rng.choice([-1, 1], n)
    present = np.array([[True, True], [True, False], [False, True]])[rng.integers(0, 3, n)]
    np.testing.assert_allclose(inter.llr(t, b, cat, present, context), bal.llr(t, b, cat, present), atol=1e-12)
    np.testing.assert_allclose(inter.ceiling_llr(t, b, cat, present), bal.ceiling_llr(t, b, cat, present), atol=1e-12)
    assert inter.closed_form() == bal.closed_form()
    p_int, p_bal = inter.population("mixed", 0.3), bal.population("mixed", 0.3)
    assert abs(p_int.bayes - p_bal.bayes) < 3 * np.hypot(p_int.bayes_se, p_bal.bayes_se)


@pytest.mark.parametrize("scenario, extra", ALL)
def test_ceiling_never_above_bayes(scenario, extra):
    oracle = _oracle(scenario, **extra)
    for mechanism in ("mcar", "mnar"):
        for rate in (0.0, 0.3, 0.6):
            for pattern in ("mixed", "image", "tabular"):
                p = oracle.population(pattern, rate, mechanism=mechanism, strength=1.5)
                assert p.ceiling <= p.bayes + 3 * p.gap_se + 1e-12, (mechanism, rate, pattern, p)


def test_ceiling_is_bayes_for_balanced_and_below_it_where_the_joint_matters():
    ds = create_dataset("synthetic", n_train=10, n_val=10, n_test=300)
    table, oracle = ds.load_table(), ds.oracle()
    test = _split(table, "test")
    present = np.array([[True, True], [True, False], [False, True]])[np.arange(len(test)) % 3]
    np.testing.assert_allclose(oracle.scores(table, test, present), oracle.ceiling_scores(table, test, present), atol=1e-12)
    p = oracle.population("mixed", 0.3)
    assert p.ceiling == p.bayes and p.gap_se == 0.0
    for scenario in ("interaction", "redundant_hard"):
        q = _oracle(scenario).population("mixed", 0.3)
        assert q.bayes - q.ceiling > 5 * q.gap_se  # late fusion is provably suboptimal there


@pytest.mark.parametrize("scenario", ["balanced", "interaction", "redundant_hard"])
def test_matched_filter_still_exact(scenario):
    ds = create_dataset("synthetic", scenario=scenario, n_train=10, n_val=10, n_test=300)
    table = ds.load_table()
    test = _split(table, "test")
    images = table.images.arrays["image"][test].reshape(len(test), -1) - C_OFFSET
    matched = images @ template(32).ravel()
    np.testing.assert_allclose(matched, table.extras["latent_a"][test], atol=1e-4)
    tab = table.numeric[test] @ (np.r_[np.ones(4), np.zeros(4)] / 2.0)
    np.testing.assert_allclose(tab, table.extras["latent_b"][test], atol=1e-4)
    if scenario != "interaction":  # image only: the LLR is monotone in the matched filter
        present = np.tile([True, False], (len(test), 1))
        auc = roc_auc_score(table.labels[test], ds.oracle().scores(table, test, present)[:, 1])
        assert auc == pytest.approx(roc_auc_score(table.labels[test], matched), abs=1e-9)


def test_context_column_only_for_interaction():
    for scenario in ("balanced", "redundant_hard", "dominant", "informative_missing"):
        table = create_dataset("synthetic", scenario=scenario, **TINY).load_table()
        assert "context" not in [c.name for c in table.columns]
    table = create_dataset("synthetic", scenario="interaction", n_train=40, n_val=4, n_test=4).load_table()
    column = [c for c in table.columns if c.name == "context"]
    assert len(column) == 1 and column[0].kind == "categorical" and column[0].categories == ("A", "B")
    values = table.categorical[:, -1]
    np.testing.assert_array_equal(values == "A", table.extras["context"] == 1)  # s = +1 -> "A"
    # The context flips the image shift: E[a | y, s] = s (2y - 1) d_img / 2 at lambda = 1.
    ds = create_dataset("synthetic", scenario="interaction", n_train=4000, n_val=4, n_test=4)
    t = ds.load_table()
    sa = t.extras["context"] * t.extras["latent_a"]
    assert abs(sa[t.labels == 1].mean() - 1.19 / 2) < 0.06 and abs(sa[t.labels == 0].mean() + 1.19 / 2) < 0.06


@pytest.mark.parametrize("scenario, extra", [("interaction", {}), ("interaction", {"interaction_lambda": 0.5}),
                                             ("redundant_hard", {})])
def test_empirical_oracle_auc_matches_population(scenario, extra):
    ds = create_dataset("synthetic", scenario=scenario, n_train=10, n_val=10, n_test=1500,
                        mc_samples=50_000, **extra)
    table, oracle = ds.load_table(), ds.oracle()
    test = _split(table, "test")
    keep = drop_mask(table.ids[test], stratum_labels(table.labels[test], "binary"), 0.3, "mixed", 0, "synthetic", "test")
    for present, rate in ((np.ones((len(test), 2), bool), 0.0), (keep, 0.3)):
        for scores, population in ((oracle.scores, oracle.population_auc),
                                   (oracle.ceiling_scores, oracle.population_ceiling_auc)):
            aucs, cov = delong(table.labels[test], scores(table, test, present)[:, 1])
            pop = population("mixed", rate)
            assert abs(aucs[0] - pop) < 3.5 * np.sqrt(cov[0, 0]) + 0.005, (scenario, rate, aucs[0], pop)


def _mnar_mask(labels: np.ndarray, rate: float, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A label-dependent mixed mask with exact per-class counts (what the mnar mechanism realises)."""
    rates = mnar_class_rates(rate, strength, [np.mean(labels == 0), np.mean(labels == 1)])
    present = np.ones((len(labels), 2), bool)
    for k in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == k))
        dropped = members[: int(round(rates[k] * len(members)))]
        half = len(dropped) // 2
        present[dropped[:half], IMAGE] = False
        present[dropped[half:], TABULAR] = False
    return present


def test_mnar_pattern_term_raises_the_oracle_auc():
    ds = create_dataset("synthetic", scenario="informative_missing", n_train=10, n_val=10, n_test=1500,
                        mc_samples=50_000)
    table, oracle = ds.load_table(), ds.oracle()
    test = _split(table, "test")
    labels = table.labels[test]
    present = _mnar_mask(labels, 0.5, 1.5, np.random.default_rng(3))
    term = realised_pattern_log_odds(present, labels)
    assert term["both"] < 0 < term["image"] and term["tabular"] > 0  # positives lose a modality more often
    with_term = roc_auc_score(labels, oracle.scores(table, test, present, term)[:, 1])
    without = roc_auc_score(labels, oracle.scores(table, test, present)[:, 1])
    assert with_term > without + 0.01
    # Population: the pattern term under mnar; none at strength 0 (= mcar, same MC sample).
    mnar = oracle.population("mixed", 0.5, mechanism="mnar", strength=1.5)
    assert mnar.bayes > oracle.population_auc("mixed", 0.5) + 0.01
    assert abs(with_term - mnar.bayes) < 0.04
    zero = population_pattern_log_odds("mixed", class_drop_rates(0.5, "mnar", 0.0, 0.5), 0.5)
    assert zero == {"both": 0.0, "image": 0.0, "tabular": 0.0}
    assert oracle.population_auc("mixed", 0.5, mechanism="mnar", strength=0.0) == oracle.population_auc("mixed", 0.5)
    balanced_mask = np.tile(np.array([[True, True], [True, False], [False, True], [True, True]]), (2, 1))
    assert realised_pattern_log_odds(balanced_mask, np.repeat([0, 1], 4)) == {"both": 0.0, "image": 0.0, "tabular": 0.0}
    assert np.isnan(oracle.population_auc("mixed", 0.3, mechanism="mar"))


def test_oracle_reference_logs_the_ceiling_and_the_pattern_term(tmp_path):
    ds = create_dataset("synthetic", scenario="informative_missing", n_train=60, n_val=40, n_test=600,
                        mc_samples=20_000)
    table = ds.load_table()
    ref = {}
    for mechanism in ("mcar", "mnar"):
        spec = MissingSpec("mixed", 0.5, "both", mechanism=mechanism, strength=1.5)
        data = ds.prepare(table, spec, seed=0, mask_dir=tmp_path)
        ref[mechanism] = oracle_reference(ds.oracle(), data, spec)
        predictions = oracle_predictions(ds.oracle(), data, spec)
        assert {"ceiling_probs_mask", "ceiling_probs_full", "probs_mask"} <= set(predictions)
    for key in ("ceiling_test_auc", "ceiling_full_auc", "ceiling_image_missing_auc", "ceiling_tabular_missing_auc",
                "population_auc", "population_ceiling_auc", "population_auc_se"):
        assert key in ref["mnar"] and np.isfinite(ref["mnar"][key]), key
    assert ref["mnar"]["ceiling_test_auc"] == pytest.approx(ref["mnar"]["test_auc"])  # balanced: = Bayes
    assert ref["mnar"]["population_auc"] > ref["mcar"]["population_auc"] + 0.01  # the pattern term
    assert ref["mnar"]["test_auc"] > ref["mcar"]["test_auc"]


def test_scenario_latents_and_presets():
    assert _oracle("dominant").o.resolved() == (1.8, 0.5, 0.0)
    assert _oracle("redundant_hard").o.resolved()[2] == 0.8
    assert create_dataset("synthetic", preset="image_dominant", **TINY).options.resolved() == (1.8, 0.5, 0.0)
    assert create_dataset("synthetic", scenario="dominant", d_tab=0.7, **TINY).options.resolved() == (1.8, 0.7, 0.0)
    hard = create_dataset("synthetic", scenario="redundant_hard", sigma_pix=0.1, **TINY).options
    assert hard.pixel_noise == hard.hard_sigma_pix > 0.1  # the dataset config's low sigma_pix does not apply
    ds = create_dataset("synthetic", scenario="informative_missing", **TINY)
    assert ds.expected_missing == {"mechanism": "mnar", "strength": 1.5}
    assert create_dataset("synthetic", **TINY).expected_missing == {}


@pytest.mark.parametrize("options, key", [
    ({"scenario": "nope"}, "scenario"), ({"scenario": "interaction", "interaction_lambda": 1.5}, "interaction_lambda"),
    ({"interaction_lambda": 0.5}, "interaction_lambda"), ({"scenario": "redundant_hard", "hard_sigma_pix": 0.0}, "hard_sigma_pix"),
    ({"hard_sigma_pix": 0.3}, "hard_sigma_pix"), ({"sigma_pix": -1.0}, "sigma_pix")])
def test_bad_scenario_options_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        create_dataset("synthetic", **options)
