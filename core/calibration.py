"""One post-hoc calibration step, the same for every method, fitted on the validation split only.

Why: methods differ in how (and whether) they calibrate their outputs — a neural net trained with
early stopping is often far under- or over-confident, a sklearn model may be calibrated by its
loss — so comparing ECE / Brier / log loss, or any metric that reads a probability threshold,
between raw outputs would compare calibration recipes rather than fusion methods.  Every method
therefore gets the same step, after model selection and after its own ``fit_on_validation``:

* ``none`` — probabilities are scored as the method returns them;
* ``temperature`` — one temperature T > 0 minimising the validation NLL of softmax(log p / T)
  (binary and multiclass), or, multilabel, of each label's sigmoid(logit p / T) with one T shared
  by the labels (Guo et al. 2017);
* ``affine`` (the default) — the temperature plus one bias per class (multilabel: per label),
  softmax(log p / T + b), fitted jointly on the validation NLL: Platt scaling for a binary task,
  "temperature + class bias" (vector scaling with a shared scale) otherwise.  Why it is the
  default: a temperature never moves the decision threshold, so a head that early stopping selected
  while still biased towards one class keeps predicting that class (measured: CFCML and DAFT at
  validation AUC 0.82 with test ACC 0.50 on some seeds), and ACC, ECE and Brier would then score
  that bias rather than the fusion.  The bias is fitted on the validation split like T; it never
  changes the ranking of a binary score (AUC unchanged within a pattern);
* ``pattern_affine`` — ``affine`` per availability pattern, with the fallback rules below;
* ``pattern_temperature`` — one temperature per availability pattern (``both`` / ``image_only``
  / ``tabular_only``), each fitted on the validation rows of that pattern under the validation
  mask; a pattern with fewer than ``MIN_PATTERN_ROWS`` rows or a single class falls back to the
  global fit (``Calibrator.fitted`` says which patterns were fitted).  A test row gets
  the temperature of *its* pattern in each scenario.

It works from probabilities (log p as logits), so it applies uniformly to every method, sklearn
ones included.  Rows with no modality (scored with the training prior, never shown to a method)
are neither fitted on nor changed.  A single temperature never changes a row's argmax, and neither
a temperature nor an affine map changes the ranking of a binary or multilabel score among the rows
the method scored (their AUC is unchanged; prior rows keep their value, so an AUC over both kinds
of rows may shift slightly); per-pattern fits may re-rank rows across patterns, which is the point.  Fitting only receives the arrays it is given: the cell
runner passes the validation split's, so the test split is never seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import minimize, minimize_scalar

CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "pattern_temperature", "affine", "pattern_affine")
CalibrationKind = Literal["none", "temperature", "pattern_temperature", "affine", "pattern_affine"]
PER_PATTERN: frozenset[str] = frozenset({"pattern_temperature", "pattern_affine"})
WITH_BIAS: frozenset[str] = frozenset({"affine", "pattern_affine"})
# Availability patterns: (name, image present, tabular present).
PATTERNS: tuple[tuple[str, bool, bool], ...] = (("both", True, True), ("image_only", True, False),
                                                ("tabular_only", False, True))
MIN_PATTERN_ROWS = 20      # fewer validation rows of a pattern: the global fit is used
LOG_T_BOUNDS = (-5.0, 5.0)  # T in [e^-5, e^5]: wide enough for any early-stopped model
AFFINE_LOG_T_BOUNDS = (-12.0, 5.0)  # affine: T down to e^-12, for heads whose logits nearly collapsed
BIAS_BOUND = 1e4           # |b| <= 1e4 calibrated logits: far beyond any useful shift, keeps the fit bounded
EPS = 1e-12                # probabilities are clipped to [EPS, 1 - EPS] before taking logs


def as_logits(task: str, probs: np.ndarray) -> np.ndarray:
    """Logits whose (soft)max reproduces ``probs``: log p (softmax is shift-invariant) or, for
    multilabel, each label's log-odds."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p) if task == "multilabel" else np.log(p)


def scaled_probs(task: str, logits: np.ndarray, temperature: float, bias: np.ndarray | None = None) -> np.ndarray:
    """softmax(logits / T + b) per row, or, multilabel, sigmoid(logits / T + b) per element."""
    z = logits / temperature + (0.0 if bias is None else np.asarray(bias, dtype=np.float64))
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(task: str, labels: np.ndarray, logits: np.ndarray, temperature: float,
        bias: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of softmax(z / T + b): cross-entropy of the true class, or the
    mean binary cross-entropy over every (row, label) of a multilabel task."""
    z = logits / temperature + (0.0 if bias is None else np.asarray(bias, dtype=np.float64))
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


@dataclass(frozen=True)
class Scaling:
    """One fitted map of the logits: z / temperature + bias (bias all zero for a temperature)."""

    temperature: float = 1.0
    bias: tuple[float, ...] = ()

    def apply(self, task: str, logits: np.ndarray) -> np.ndarray:
        return scaled_probs(task, logits, self.temperature, np.asarray(self.bias) if self.bias else None)


def fit_affine(task: str, labels: np.ndarray, probs: np.ndarray) -> Scaling:
    """Temperature and per-class (multilabel: per-label) bias minimising the NLL of these rows.

    Fitted as softmax(a z + b) with a = 1 / T: the NLL is convex in (a, b) (a multinomial logistic
    regression with one shared coefficient), so L-BFGS-B with the exact gradient finds the global
    optimum whatever the start — a head whose logits are tiny *and* shifted needs a bias far larger
    than its logits, which a search in (log T, b) can miss.  Kept only when it lowers the NLL of the
    fitted temperature, so it is never worse on the fitting rows than ``temperature`` (nor the
    identity).  For a softmax the first class's bias is fixed at 0 (only differences matter), so a
    binary task fits exactly Platt's two parameters on the log-odds."""
    t0 = fit_temperature(task, labels, probs)
    n_out = np.asarray(probs).shape[1]
    if len(labels) == 0:
        return Scaling(t0, (0.0,) * n_out)
    logits = as_logits(task, probs)
    multilabel = task == "multilabel"
    # Fitted on logits divided by their spread (row-centred for a softmax, which ignores a row's
    # shift), so the problem is well conditioned for a head of any scale; a is mapped back below.
    centred = logits if multilabel else logits - logits.mean(axis=1, keepdims=True)
    spread = float(centred.std()) or 1.0
    features = logits / spread
    y = np.asarray(labels, dtype=np.float64) if multilabel else np.eye(n_out)[np.asarray(labels).astype(int)]

    def unpack(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return float(theta[0]), (theta[1:] if multilabel else np.concatenate([[0.0], theta[1:]]))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, bias = unpack(theta)
        residual = scaled_probs(task, features, 1.0 / a, bias) - y   # dNLL / dz' per element (x N or N K)
        residual /= residual.size if multilabel else len(residual)
        grad_bias = residual.sum(axis=0)
        grad = np.concatenate([[float((residual * features).sum())], grad_bias if multilabel else grad_bias[1:]])
        return nll(task, labels, features, 1.0 / a, bias), grad

    start = np.concatenate([[spread / t0], np.zeros(n_out if multilabel else n_out - 1)])
    a_bounds = (spread * float(np.exp(-AFFINE_LOG_T_BOUNDS[1])), spread * float(np.exp(-AFFINE_LOG_T_BOUNDS[0])))
    fit = minimize(objective, start, jac=True, method="L-BFGS-B",
                   bounds=[a_bounds] + [(-BIAS_BOUND, BIAS_BOUND)] * (len(start) - 1))
    theta = fit.x if objective(fit.x)[0] < objective(start)[0] else start
    a, bias = unpack(theta)
    a /= spread
    return Scaling(1.0 / a, tuple(float(b) for b in bias))


def fit_scaling(kind: CalibrationKind, task: str, labels: np.ndarray, probs: np.ndarray) -> Scaling:
    """The map ``kind`` fits on these rows: a temperature alone, or temperature and bias."""
    if kind in WITH_BIAS:
        return fit_affine(task, labels, probs)
    return Scaling(fit_temperature(task, labels, probs))


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
    """A fitted calibration step: the global map and, per pattern, the one it uses."""

    kind: CalibrationKind
    task: str
    scaling: Scaling = Scaling()
    # pattern name -> map applied to that pattern (the global one where it was not fitted)
    pattern_scalings: dict[str, Scaling] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()  # patterns with a map of their own

    @property
    def temperature(self) -> float:
        return self.scaling.temperature

    def scaling_of(self, pattern: str) -> Scaling:
        return self.pattern_scalings.get(pattern, self.scaling)

    def temperature_of(self, pattern: str) -> float:
        return self.scaling_of(pattern).temperature

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
                out[rows] = self.scaling_of(name).apply(self.task, logits[rows])
        return out

    def metrics(self) -> dict[str, float]:
        """What to log: the global temperature (and bias), the per-pattern ones and how many were fitted."""
        def entries(suffix: str, scaling: Scaling) -> dict[str, float]:
            out = {f"calibration_temperature{suffix}": scaling.temperature}
            if self.kind in WITH_BIAS:
                out.update({f"calibration_bias{suffix}_{k}": b for k, b in enumerate(scaling.bias)})
            return out

        out = entries("", self.scaling)
        if self.kind in PER_PATTERN:
            for name, _, _ in PATTERNS:
                out.update(entries(f"_{name}", self.scaling_of(name)))
            out["calibration_patterns_fitted"] = float(len(self.fitted))
        return out


def fit_calibrator(kind: CalibrationKind, task: str, labels: np.ndarray, probs: np.ndarray,
                   present: np.ndarray, min_rows: int = MIN_PATTERN_ROWS) -> Calibrator:
    """Fit the step on one split (the cell runner gives it the validation split under its mask).

    ``present`` is each row's availability; rows with no modality are left out of every fit.
    A per-pattern kind fits a pattern only with at least ``min_rows`` rows and two classes,
    otherwise that pattern uses the global map (fitted on all rows with a modality).
    """
    if kind not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {kind!r}; known: {', '.join(CALIBRATIONS)}")
    if kind == "none":
        return Calibrator("none", task)
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    index = pattern_index(present)
    usable = index >= 0
    global_fit = fit_scaling(kind, task, labels[usable], probs[usable])
    if kind not in PER_PATTERN:
        return Calibrator(kind, task, global_fit)
    per_pattern, fitted = {}, []
    for i, (name, _, _) in enumerate(PATTERNS):
        rows = index == i
        if rows.sum() >= min_rows and not single_class(task, labels[rows]):
            per_pattern[name] = fit_scaling(kind, task, labels[rows], probs[rows])
            fitted.append(name)
        else:
            per_pattern[name] = global_fit
    return Calibrator(kind, task, global_fit, per_pattern, tuple(fitted))
