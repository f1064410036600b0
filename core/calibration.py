"""One post-hoc calibration step, the same for every method, fitted on the validation split only.

Why: methods differ in how (and whether) they calibrate their outputs — a neural net trained with
early stopping is often far under- or over-confident, a sklearn model may be calibrated by its
loss — so comparing ECE / Brier / log loss, or any metric that reads a probability threshold,
between raw outputs would compare calibration recipes rather than fusion methods.  Every method
therefore gets the same step, after model selection and after its own ``fit_on_validation``:

* ``none`` — probabilities are scored as the method returns them;
* ``temperature`` (the default) — one temperature T > 0 minimising the validation NLL of
  softmax(log p / T) (binary and multiclass), or, multilabel, of each label's sigmoid(logit p / T)
  with one T shared by the labels (Guo et al. 2017);
* ``pattern_temperature`` — one temperature per availability pattern (``both`` / ``image_only``
  / ``tabular_only``), each fitted on the validation rows of that pattern under the validation
  mask; a pattern with fewer than ``MIN_PATTERN_ROWS`` rows or a single class falls back to the
  global temperature (``Calibrator.fitted`` says which patterns were fitted).  A test row gets
  the temperature of *its* pattern in each scenario.

It works from probabilities (log p as logits), so it applies uniformly to every method, sklearn
ones included.  Rows with no modality (scored with the training prior, never shown to a method)
are neither fitted on nor changed.  A single temperature never changes a row's argmax nor the
ranking of a binary or multilabel score among the rows the method scored (their AUC is unchanged;
prior rows keep their value, so an AUC over both kinds of rows may shift slightly); per-pattern
temperatures may re-rank rows across patterns, which is the point.  Fitting only receives the arrays it is given: the cell
runner passes the validation split's, so the test split is never seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar

CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "pattern_temperature")
CalibrationKind = Literal["none", "temperature", "pattern_temperature"]
# Availability patterns: (name, image present, tabular present).
PATTERNS: tuple[tuple[str, bool, bool], ...] = (("both", True, True), ("image_only", True, False),
                                                ("tabular_only", False, True))
MIN_PATTERN_ROWS = 20      # fewer validation rows of a pattern: the global temperature is used
LOG_T_BOUNDS = (-5.0, 5.0)  # T in [e^-5, e^5]: wide enough for any early-stopped model
EPS = 1e-12                # probabilities are clipped to [EPS, 1 - EPS] before taking logs


def as_logits(task: str, probs: np.ndarray) -> np.ndarray:
    """Logits whose (soft)max reproduces ``probs``: log p (softmax is shift-invariant) or, for
    multilabel, each label's log-odds."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p) if task == "multilabel" else np.log(p)


def scaled_probs(task: str, logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) per row, or, multilabel, sigmoid(logits / T) per element."""
    z = logits / temperature
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(task: str, labels: np.ndarray, logits: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood at temperature T: cross-entropy of the true class, or the mean
    binary cross-entropy over every (row, label) of a multilabel task."""
    z = logits / temperature
    if task == "multilabel":
        y = np.asarray(labels, dtype=np.float64)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))  # log(1 + e^z) - y z
    y = np.asarray(labels).astype(int)
    log_norm = np.logaddexp.reduce(z, axis=1)
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(task: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """The temperature minimising the NLL of these rows (bounded search on log T); 1.0 when there
    are no rows, and never one with a higher NLL than T = 1 (the identity)."""
    if len(labels) == 0:
        return 1.0
    logits = as_logits(task, probs)
    fit = minimize_scalar(lambda log_t: nll(task, labels, logits, float(np.exp(log_t))),
                          bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    t = float(np.exp(fit.x))
    return t if nll(task, labels, logits, t) <= nll(task, labels, logits, 1.0) else 1.0


def pattern_index(present: np.ndarray) -> np.ndarray:
    """(N,) index into ``PATTERNS`` of each row's availability; -1 for rows with no modality."""
    present = np.asarray(present, bool)
    out = np.full(len(present), -1)
    for i, (_, image, tabular) in enumerate(PATTERNS):
        out[(present[:, 0] == image) & (present[:, 1] == tabular)] = i
    return out


def single_class(task: str, labels: np.ndarray) -> bool:
    """True when the rows carry no contrast to fit on: one class (multilabel: no label with both values)."""
    y = np.asarray(labels)
    if task == "multilabel":
        return not any(0 < y[:, k].sum() < len(y) for k in range(y.shape[1]))
    return len(np.unique(y)) < 2


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration step: the global temperature and, per pattern, the one it uses."""

    kind: CalibrationKind
    task: str
    temperature: float = 1.0
    # pattern name -> temperature applied to that pattern (the global one where it was not fitted)
    pattern_temperatures: dict[str, float] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()  # patterns with a temperature of their own

    def temperature_of(self, pattern: str) -> float:
        return self.pattern_temperatures.get(pattern, self.temperature)

    def apply(self, probs: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Calibrated probabilities; ``present`` (N, 2) is the availability each row was scored with
        (rows with no modality keep the training prior unchanged)."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.kind == "none":
            return probs.copy()
        out = probs.copy()
        index = pattern_index(present)
        logits = as_logits(self.task, probs)
        for i, (name, _, _) in enumerate(PATTERNS):
            rows = index == i
            if rows.any():
                out[rows] = scaled_probs(self.task, logits[rows], self.temperature_of(name))
        return out

    def metrics(self) -> dict[str, float]:
        """What to log: the global temperature, the per-pattern ones and how many were fitted."""
        out = {"calibration_temperature": self.temperature}
        if self.kind == "pattern_temperature":
            out.update({f"calibration_temperature_{name}": self.temperature_of(name) for name, _, _ in PATTERNS})
            out["calibration_patterns_fitted"] = float(len(self.fitted))
        return out


def fit_calibrator(kind: CalibrationKind, task: str, labels: np.ndarray, probs: np.ndarray,
                   present: np.ndarray, min_rows: int = MIN_PATTERN_ROWS) -> Calibrator:
    """Fit the step on one split (the cell runner gives it the validation split under its mask).

    ``present`` is each row's availability; rows with no modality are left out of every fit.
    ``pattern_temperature`` fits a pattern only with at least ``min_rows`` rows and two classes,
    otherwise it uses the global temperature (fitted on all rows with a modality).
    """
    if kind not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {kind!r}; known: {', '.join(CALIBRATIONS)}")
    if kind == "none":
        return Calibrator("none", task)
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    index = pattern_index(present)
    usable = index >= 0
    global_t = fit_temperature(task, labels[usable], probs[usable])
    if kind == "temperature":
        return Calibrator("temperature", task, global_t)
    per_pattern, fitted = {}, []
    for i, (name, _, _) in enumerate(PATTERNS):
        rows = index == i
        if rows.sum() >= min_rows and not single_class(task, labels[rows]):
            per_pattern[name] = fit_temperature(task, labels[rows], probs[rows])
            fitted.append(name)
        else:
            per_pattern[name] = global_t
    return Calibrator("pattern_temperature", task, global_t, per_pattern, tuple(fitted))
