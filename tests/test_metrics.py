"""Metrics agree with scikit-learn on known inputs; DeLong agrees with a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

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
