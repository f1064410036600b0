"""Metrics per task type, computed with scikit-learn (nothing re-implemented but DeLong).

* AUC: binary ROC AUC of P(class 1); multiclass macro one-vs-rest; multilabel macro over the
  labels that have both classes in the evaluated set.
* ACC: argmax accuracy; multilabel: element-wise accuracy at threshold 0.5.
* Balanced accuracy and macro F1 likewise (multilabel: per-label mean / macro F1 at 0.5).
* ``auc_micro``, ``f1_micro``, ``kappa``: multilabel only, on the flattened N x K matrices (the
  official ODIR AUC, F1 and kappa; threshold 0.5).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

METRIC_NAMES = ("auc", "acc", "balanced_acc", "f1_macro")


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
    return out


def _midrank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = ranks
    return out


def delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for one or more score vectors on the same samples.

    ``scores`` is (N,) or (R, N); returns (R,) AUCs and (R, R) covariance (fast DeLong, Sun & Xu
    2014).  Used for the oracle's standard error and paired tests between methods.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, labels], scores[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.stack([_midrank(r) for r in pos])
    ty = np.stack([_midrank(r) for r in neg])
    tz = np.stack([_midrank(r) for r in np.concatenate([pos, neg], axis=1)])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, cov
