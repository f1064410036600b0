"""Metrics agree with scikit-learn on known inputs; DeLong agrees with a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

from core.metrics import compute_metrics, delong


def test_binary_known_values():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    m = compute_metrics("binary", y, np.stack([1 - p1, p1], 1))
    assert m["auc"] == pytest.approx(0.75)
    assert m["acc"] == pytest.approx(0.75)  # predictions 0,0,0,1
    assert m["balanced_acc"] == pytest.approx(0.75)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = rng.dirichlet(np.ones(3), 200)
    m = compute_metrics("multiclass", y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["acc"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    assert m["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
    assert m["f1_macro"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


def test_multilabel_macro_and_micro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (100, 4))
    p = rng.random((100, 4))
    m = compute_metrics("multilabel", y, p)
    assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(4)]))
    assert m["auc_micro"] == pytest.approx(roc_auc_score(y.ravel(), p.ravel()))


def test_delong_matches_direct_computation():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 150)
    s1 = y + rng.normal(0, 1.2, 150)
    s2 = y + rng.normal(0, 1.5, 150)
    aucs, cov = delong(y, np.stack([s1, s2]))
    assert aucs[0] == pytest.approx(roc_auc_score(y, s1))
    assert aucs[1] == pytest.approx(roc_auc_score(y, s2))
    # Direct DeLong (1988): structural components from pairwise kernels.
    pos, neg = s1[y == 1], s1[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    assert cov[0, 0] == pytest.approx(var, rel=1e-9)
    assert cov[0, 1] == pytest.approx(cov[1, 0])


def test_single_class_gives_nan_auc():
    m = compute_metrics("binary", np.zeros(5, int), np.tile([0.7, 0.3], (5, 1)))
    assert np.isnan(m["auc"]) and m["acc"] == 1.0


def test_binary_calibration_metrics_by_hand():
    # rows [0.9, 0.1] y0, [0.6, 0.4] y0, [0.65, 0.35] y1, [0.2, 0.8] y1
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    m = compute_metrics("binary", y, np.stack([1 - p1, p1], 1))
    # Brier on both columns: (0.02 + 0.32 + 0.845 + 0.08) / 4
    assert m["brier"] == pytest.approx(1.265 / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    # Confidences 0.9, 0.6, 0.65, 0.8 fall in four different bins: mean |correct - confidence|
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)


def test_multiclass_calibration_metrics_by_hand():
    y = np.array([0, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.72, 0.18], [0.25, 0.3, 0.45]])
    m = compute_metrics("multiclass", y, p)
    # ECE: 0.7 and 0.72 share the bin (2/3, 11/15] (1 of 2 right), 0.45 is alone in (0.4, 7/15]
    assert m["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.71) + 1 / 3 * abs(1 - 0.45))
    assert m["brier"] == pytest.approx((0.14 + 1.2008 + 0.455) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.18, 0.45])))


def test_multilabel_calibration_metrics_are_means_over_labels():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.8, 0.3], [0.4, 0.1]])
    m = compute_metrics("multilabel", y, p)
    # label 0: confidences 0.8 (right), 0.6 (right); label 1: 0.7 (right), 0.9 (right)
    assert m["ece"] == pytest.approx(np.mean([(0.2 + 0.4) / 2, (0.3 + 0.1) / 2]))
    assert m["brier"] == pytest.approx(np.mean([(2 * 0.04 + 2 * 0.16) / 2, (2 * 0.09 + 2 * 0.01) / 2]))
    assert m["log_loss"] == pytest.approx(np.mean([-np.log([0.8, 0.6]).mean(), -np.log([0.7, 0.9]).mean()]))


def test_log_loss_matches_sklearn_and_clips_zero_probabilities():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 100)
    p = rng.dirichlet(np.ones(3), 100)
    assert compute_metrics("multiclass", y, p)["log_loss"] == pytest.approx(log_loss(y, p))
    hard = np.eye(3)[(y + 1) % 3]  # every true class has probability 0
    value = compute_metrics("multiclass", y, hard)["log_loss"]
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-15), rel=1e-6)
    assert compute_metrics("multiclass", y, np.eye(3)[y])["ece"] == pytest.approx(0.0)
