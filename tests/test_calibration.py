"""The shared post-hoc calibration step (core.calibration) and its place in a cell run.

Fabricated logits with a known temperature check the fit; a spy on the cell runner checks that
the step is fitted on the validation split only; one tiny run checks what is logged.
"""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import benchmark.cells.runner as cell_runner
import benchmark.run as run_module
from benchmark.config.schema import EvaluationConfig
from benchmark.grid import ORACLE_METHOD
from benchmark.summary import build_leaderboards
from core.calibration import PATTERNS, as_logits, fit_affine, fit_calibrator, fit_temperature, nll
from core.metrics import compute_metrics
from tests.conftest import write_tiny_config


def child_runs(results: Path) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("medfusion-synthetic")
    return mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def fabricated(task: str, n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated logits z, and a model's probabilities from the logits
    z x temperature (temperature > 1: over-confident), so the NLL-optimal temperature dividing the
    model's logits is ``temperature``."""
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        z = rng.normal(0, 1.5, (n, 3))
        labels = (rng.random((n, 3)) < 1 / (1 + np.exp(-z))).astype(int)
        return labels, 1 / (1 + np.exp(-z * temperature))
    k = 2 if task == "binary" else 4
    z = rng.normal(0, 1.5, (n, k))
    labels = np.array([rng.choice(k, p=row) for row in softmax(z)])
    return labels, softmax(z * temperature)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("true_t", [0.4, 2.5])
def test_temperature_recovers_a_known_temperature(task, true_t):
    labels, probs = fabricated(task, 6000, true_t)
    assert fit_temperature(task, labels, probs) == pytest.approx(true_t, rel=0.08)


def test_pattern_temperature_fits_one_temperature_per_pattern():
    parts, truth = [], {"both": 0.5, "image_only": 2.0, "tabular_only": 3.0}
    for i, (name, image, tabular) in enumerate(PATTERNS):
        labels, probs = fabricated("multiclass", 3000, truth[name], seed=i)
        parts.append((labels, probs, np.tile([image, tabular], (len(labels), 1))))
    labels, probs, present = (np.concatenate(x) for x in zip(*parts))
    cal = fit_calibrator("pattern_temperature", "multiclass", labels, probs, present)
    assert cal.fitted == ("both", "image_only", "tabular_only")
    for name, t in truth.items():
        assert cal.temperature_of(name) == pytest.approx(t, rel=0.1)
    # Applied by each row's pattern: the image-only rows get the image-only temperature.
    rows = present[:, 0] & ~present[:, 1]
    expected = softmax(as_logits("multiclass", probs[rows]) / cal.temperature_of("image_only"))
    np.testing.assert_allclose(cal.apply(probs, present)[rows], expected, rtol=1e-9)
    metrics = cal.metrics()
    assert metrics["calibration_patterns_fitted"] == 3 and "calibration_temperature_tabular_only" in metrics


def test_small_or_single_class_patterns_fall_back_to_the_global_temperature():
    labels, probs = fabricated("binary", 400, 0.5)
    present = np.ones((400, 2), bool)
    present[:10, 1] = False                  # 10 image-only rows: below MIN_PATTERN_ROWS
    present[10:60, 0] = False                # 50 tabular-only rows, made single-class
    labels[10:60] = 1
    cal = fit_calibrator("pattern_temperature", "binary", labels, probs, present)
    assert cal.fitted == ("both",)
    assert cal.temperature_of("image_only") == cal.temperature_of("tabular_only") == cal.temperature
    assert cal.metrics()["calibration_patterns_fitted"] == 1


@pytest.mark.parametrize("kind", ["temperature", "pattern_temperature", "affine", "pattern_affine"])
@pytest.mark.parametrize("task,true_t", [("binary", 0.6), ("multiclass", 1.0), ("multilabel", 1.7)])
def test_validation_nll_never_increases(kind, task, true_t):
    labels, probs = fabricated(task, 500, true_t, seed=7)
    present = np.random.default_rng(7).random((500, 2)) < 0.8
    usable = present.any(axis=1)
    cal = fit_calibrator(kind, task, labels, probs, present)
    after = cal.apply(probs, present)
    before_nll = nll(task, labels[usable], as_logits(task, probs[usable]), 1.0)
    after_nll = nll(task, labels[usable], as_logits(task, after[usable]), 1.0)
    assert after_nll <= before_nll + 1e-12
    assert compute_metrics(task, labels, after)["log_loss"] <= compute_metrics(task, labels, probs)["log_loss"] + 1e-9


def test_one_temperature_keeps_the_ranking_and_leaves_prior_rows_alone():
    labels, probs = fabricated("binary", 800, 0.3, seed=3)
    present = np.ones((800, 2), bool)
    present[:50] = False                     # no modality: scored with the training prior
    probs[:50] = [0.7, 0.3]
    cal = fit_calibrator("temperature", "binary", labels, probs, present)
    assert cal.temperature == pytest.approx(0.3, rel=0.2)
    after = cal.apply(probs, present)
    np.testing.assert_array_equal(after[:50], probs[:50])
    # Among the rows the method scored, the ranking (AUC) is unchanged; the prior rows keep their
    # value while the others move, so an AUC over both may shift (documented in core.calibration).
    scored = slice(50, None)
    assert roc_auc_score(labels[scored], after[scored, 1]) == pytest.approx(
        roc_auc_score(labels[scored], probs[scored, 1]), abs=1e-12)
    assert (after.argmax(1) == probs.argmax(1)).all()
    assert compute_metrics("binary", labels, after)["ece"] < compute_metrics("binary", labels, probs)["ece"]
    none = fit_calibrator("none", "binary", labels, probs, present)
    np.testing.assert_array_equal(none.apply(probs, present), probs)


def test_cell_run_fits_on_validation_only_and_logs_calibration(tmp_path, monkeypatch):
    """One tiny grid cell (tabular_sklearn, one rate, one seed, + the oracle reference)."""
    fits, prepared = [], []
    real_fit, real_prepared = cell_runner.fit_calibrator, cell_runner.CellRunner.prepared

    def spy_fit(kind, task, labels, probs, present, *args, **kwargs):
        fits.append((kind, np.array(labels), np.array(present)))
        return real_fit(kind, task, labels, probs, present, *args, **kwargs)

    def spy_prepared(self, spec):
        out = real_prepared(self, spec)
        prepared.append(out[0])
        return out

    monkeypatch.setattr(cell_runner, "fit_calibrator", spy_fit)
    monkeypatch.setattr(cell_runner.CellRunner, "prepared", spy_prepared)
    cfg, results = write_tiny_config(tmp_path)
    assert run_module.main(["--config", str(cfg), "--methods", "tabular_sklearn", "--missing-rate", "0.5",
                            "--seeds", "0", "--calibration", "pattern_temperature"]) == 0
    # Fitted once, on exactly the validation split under its mask: never the test split.
    assert len(fits) == 1 and prepared
    kind, labels, present = fits[0]
    val, test = prepared[0].splits["val"], prepared[0].splits["test"]
    assert kind == "pattern_temperature" and len(labels) == len(val) != len(test)
    np.testing.assert_array_equal(labels, val.labels)
    np.testing.assert_array_equal(present, val.present)
    runs = child_runs(results)
    method = runs[runs["tags.method"] == "tabular_sklearn"].iloc[0]
    assert method["status"] == "FINISHED" and method["params.calibration"] == "pattern_temperature"
    assert runs[runs["tags.method"] == ORACLE_METHOD].iloc[0]["params.calibration"] == "none"
    for name in ("test_ece", "test_brier", "test_log_loss", "full_ece", "tabular_missing_log_loss",
                 "calibration_temperature", "calibration_patterns_fitted", "val_calibrated_ece",
                 "val_calibrated_auc", "val_uncalibrated_log_loss", "bayes_test_brier"):
        assert np.isfinite(method[f"metrics.{name}"]), name
    assert method["metrics.calibration_temperature"] > 0
    assert method["metrics.calibration_patterns_fitted"] in (0, 1, 2, 3)
    md = (results / "synthetic" / "leaderboard.md").read_text()
    assert "`pattern_temperature` (tabular_sklearn)" in md and "**Calibration of the test-mask probabilities" in md
    files = [results / "synthetic" / name for name in ("leaderboard.md", "leaderboard.csv")]
    before = [f.read_bytes() for f in files]
    build_leaderboards(f"sqlite:///{results / 'mlflow.db'}", results, ["synthetic"])
    assert [f.read_bytes() for f in files] == before  # the calibration table rebuilds byte-identically


def shifted(task: str, probs: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The probabilities of a head whose logits carry a constant per-class offset ``shift``."""
    z = as_logits(task, probs) + shift
    return 1 / (1 + np.exp(-z)) if task == "multilabel" else softmax(z)


@pytest.mark.parametrize("task,shift", [("binary", [0.0, -2.5]), ("multiclass", [0.0, 1.5, -1.0, 0.5]),
                                        ("multilabel", [2.0, -1.0, 0.0])])
def test_affine_recovers_temperature_and_class_bias(task, shift):
    labels, calibrated = fabricated(task, 8000, 1.0, seed=11)
    biased = shifted(task, calibrated, np.asarray(shift))
    logits = as_logits(task, biased)
    over_confident = 1 / (1 + np.exp(-2 * logits)) if task == "multilabel" else softmax(2 * logits)
    fit = fit_affine(task, labels, over_confident)
    assert fit.temperature == pytest.approx(2.0, rel=0.1)
    bias = np.asarray(fit.bias)
    expected = -np.asarray(shift, dtype=float)
    if task != "multilabel":          # softmax: only differences to class 0 are identified
        expected, bias = expected - expected[0], bias - bias[0]
    np.testing.assert_allclose(bias, expected, atol=0.15)


def test_affine_moves_a_biased_threshold_that_a_temperature_cannot():
    """The measured failure that made ``affine`` the default: a head that ranks well but puts every
    row on one side of 0.5.  A temperature keeps the argmax (ACC stays at the majority share);
    the bias restores the ACC the ranking allows, without changing the ranking (AUC)."""
    labels, calibrated = fabricated("binary", 3000, 1.0, seed=5)
    biased = shifted("binary", calibrated, np.array([0.0, -6.0]))       # P(class 1) always tiny
    present = np.ones((3000, 2), bool)
    assert (biased.argmax(1) == 0).mean() > 0.95
    temp = fit_calibrator("temperature", "binary", labels, biased, present).apply(biased, present)
    affine = fit_calibrator("affine", "binary", labels, biased, present)
    after = affine.apply(biased, present)
    acc = lambda p: float((p.argmax(1) == labels).mean())  # noqa: E731
    assert acc(temp) == pytest.approx(acc(biased), abs=1e-12)
    assert acc(after) > acc(temp) + 0.15
    assert acc(after) == pytest.approx(acc(calibrated), abs=0.02)
    assert roc_auc_score(labels, after[:, 1]) == pytest.approx(roc_auc_score(labels, biased[:, 1]), abs=1e-12)
    metrics = affine.metrics()
    assert set(metrics) == {"calibration_temperature", "calibration_bias_0", "calibration_bias_1"}
    assert metrics["calibration_bias_0"] == 0.0 and metrics["calibration_bias_1"] == pytest.approx(6.0, abs=0.5)


def test_pattern_affine_fits_a_bias_per_pattern():
    parts, truth = [], {"both": 0.0, "image_only": -2.0, "tabular_only": 1.5}
    for i, (name, image, tabular) in enumerate(PATTERNS):
        labels, probs = fabricated("binary", 3000, 1.0, seed=20 + i)
        parts.append((labels, shifted("binary", probs, np.array([0.0, truth[name]])),
                      np.tile([image, tabular], (len(labels), 1))))
    labels, probs, present = (np.concatenate(x) for x in zip(*parts))
    cal = fit_calibrator("pattern_affine", "binary", labels, probs, present)
    assert cal.fitted == ("both", "image_only", "tabular_only")
    metrics = cal.metrics()
    for name, shift in truth.items():
        assert metrics[f"calibration_bias_{name}_1"] == pytest.approx(-shift, abs=0.2)
    assert metrics["calibration_patterns_fitted"] == 3


def test_affine_is_the_default_calibration():
    assert EvaluationConfig().calibration == "affine"


def test_affine_finds_a_bias_larger_than_the_heads_logits():
    """Measured on CFCML (seed 0): logits ~20x too small *and* shifted, so the temperature alone
    runs to its bound and the needed bias (~60 calibrated logits) dwarfs the raw ones."""
    labels, calibrated = fabricated("binary", 3000, 1.0, seed=9)
    z = as_logits("binary", calibrated)
    head = softmax(0.05 * (z - z[:, :1]) + np.array([0.0, -3.0]))
    fit = fit_affine("binary", labels, head)
    assert fit.temperature == pytest.approx(0.05, rel=0.1)
    assert fit.bias[1] == pytest.approx(60.0, rel=0.1)
    after = fit.apply("binary", as_logits("binary", head))
    assert float((after.argmax(1) == labels).mean()) == pytest.approx(float((calibrated.argmax(1) == labels).mean()), abs=0.02)
