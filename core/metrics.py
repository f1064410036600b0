"""Metrics per task type, computed with scikit-learn (nothing re-implemented but DeLong).

* AUC: binary ROC AUC of P(class 1); multiclass macro one-vs-rest; multilabel macro over the
  labels that have both classes in the evaluated set.
* ACC: argmax accuracy; multilabel: element-wise accuracy at threshold 0.5.
* Balanced accuracy and macro F1 likewise (multilabel: per-label mean / macro F1 at 0.5).
* ``auc_micro``, ``f1_micro``, ``kappa``: multilabel only, on the flattened N x K matrices (the
  official ODIR AUC, F1 and kappa; threshold 0.5).
* Proper scoring and calibration (why: a fusion method that ranks well can still give useless
  probabilities; these say how far the scores can be read as probabilities):

  - ``ece``: expected calibration error, 15 equal-width bins on [0, 1] of the top-class
    confidence, sum over bins of (bin share) x |accuracy - mean confidence|;
  - ``brier``: multi-class Brier score, mean over rows of sum_k (p_k - y_k)^2 with y one-hot;
    binary uses the same formula on its 2 columns (so it is twice the one-column
    (p_1 - y)^2 score, range [0, 2]);
  - ``log_loss``: ``sklearn.metrics.log_loss`` of the probabilities clipped to [1e-15, 1] and
    renormalised per row.

  Multilabel: each is the mean over labels of the binary metric of that label ([1 - p_k, p_k]).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, log_loss,
                             roc_auc_score)

METRIC_NAMES = ("auc", "acc", "balanced_acc", "f1_macro")
CALIBRATION_METRICS = ("ece", "brier", "log_loss")
ECE_BINS = 15
CLIP = 1e-15


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence: bins (lo, hi] of equal width (a confidence of 0 falls in
    the first), weighted by their share of rows; NaN for an empty set."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = np.clip(np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], conf, side="left"), 0, bins - 1)
    total = 0.0
    for b in np.unique(index):
        rows = index == b
        total += rows.mean() * abs(correct[rows].mean() - conf[rows].mean())
    return float(total)


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over rows of sum_k (p_k - y_k)^2 (y one-hot); NaN for an empty set."""
    if len(labels) == 0:
        return float("nan")
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def clipped_log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """sklearn's log loss of the clipped, row-renormalised probabilities, every class declared
    (a class absent from the set is still a column); NaN for an empty set."""
    if len(labels) == 0:
        return float("nan")
    p = np.clip(probs, CLIP, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return float(log_loss(labels, p, labels=list(range(probs.shape[1]))))


def calibration_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """ECE, Brier and log loss of integer labels and (N, K) class probabilities."""
    return {"ece": expected_calibration_error(labels, probs), "brier": brier_score(labels, probs),
            "log_loss": clipped_log_loss(labels, probs)}


def compute_metrics(task: str, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "multilabel":
            y = labels.astype(int)
            valid = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
            out["auc"] = float(np.mean([roc_auc_score(y[:, k], probs[:, k]) for k in valid])) if valid else float("nan")
            flat_ok = 0 < y.sum() < y.size
            out["auc_micro"] = float(roc_auc_score(y.ravel(), probs.ravel())) if flat_ok else float("nan")
            pred = (probs >= 0.5).astype(int)
            out["acc"] = float((pred == y).mean())
            out["balanced_acc"] = float(np.mean([balanced_accuracy_score(y[:, k], pred[:, k]) for k in valid])) if valid else float("nan")
            out["f1_macro"] = float(f1_score(y, pred, average="macro", zero_division=0))
            # ODIR's official score uses these on the flattened, binarised N x K matrices.
            out["f1_micro"] = float(f1_score(y.ravel(), pred.ravel(), zero_division=0))
            out["kappa"] = float(cohen_kappa_score(y.ravel(), pred.ravel()))
            per_label = [calibration_metrics(y[:, k], np.stack([1.0 - probs[:, k], probs[:, k]], axis=1))
                         for k in range(y.shape[1])]
            out.update({name: float(np.mean([m[name] for m in per_label])) if per_label else float("nan")
                        for name in CALIBRATION_METRICS})
            return out
        y = labels.astype(int)
        pred = probs.argmax(axis=1)
        if len(np.unique(y)) < 2:
            out["auc"] = float("nan")
        elif task == "binary":
            out["auc"] = float(roc_auc_score(y, probs[:, 1]))
        else:
            present = np.unique(y)
            if len(present) == probs.shape[1]:
                p = probs / probs.sum(axis=1, keepdims=True)
                out["auc"] = float(roc_auc_score(y, p, multi_class="ovr", average="macro"))
            else:  # a class absent from the set: macro over the classes that occur
                out["auc"] = float(np.mean([roc_auc_score(y == k, probs[:, k]) for k in present]))
        out["acc"] = float(accuracy_score(y, pred))
        out["balanced_acc"] = float(balanced_accuracy_score(y, pred))
        out["f1_macro"] = float(f1_score(y, pred, average="macro", zero_division=0))
        out.update(calibration_metrics(y, probs))
    return out


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's ``rankdata`` numbers, vectorised
    without its per-call overhead, which matters in the many small calls of the paired tests)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    change = np.flatnonzero(xs[1:] != xs[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(x)]])
    out = np.empty(len(x))
    out[order] = np.repeat((starts + ends - 1) / 2.0 + 1.0, ends - starts)
    return out


def placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components: for each positive the share of negatives it outranks (ties
    count 1/2), for each negative the share of positives that outrank it; their means are the AUC."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    m, n = len(pos), len(neg)
    tz = midranks(np.concatenate([pos, neg]))
    v10 = (tz[:m] - midranks(pos)) / n
    v01 = 1.0 - (tz[m:] - midranks(neg)) / m
    return v10, v01


def delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for one or more score vectors on the same samples.

    ``scores`` is (N,) or (R, N); returns (R,) AUCs and (R, R) covariance (fast DeLong, Sun & Xu
    2014).  Used for the oracle's standard error and paired tests between methods.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    parts = [placements(labels, row) for row in scores]
    v10, v01 = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, cov
