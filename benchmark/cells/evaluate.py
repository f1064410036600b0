"""Evaluation of one cell on its test split: the scenarios, the trained model, the Bayes reference."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from benchmark.training.loop import predict
from core.batch import PreparedData, SplitData
from core.calibration import Calibrator
from core.masks import IMAGE, TABULAR, MissingSpec
from core.metrics import compute_metrics, delong
from methods.base import FusionMethod


def scenario_presence(split: SplitData, scenario: str) -> np.ndarray:
    """Which modalities each test sample has in a scenario: the configured mask, everything
    really available ("full", the mask undone), or that with one modality removed for all."""
    if scenario == "mask":
        return split.present
    out = split.real_present.copy()
    if scenario != "full":
        out[:, IMAGE if scenario == "image_missing" else TABULAR] = False
    return out


def oracle_pattern_term(oracle: Any, test: SplitData, missing: MissingSpec | None,
                        scenario: str) -> dict[str, float] | None:
    """The Bayes pattern term ``log p(pattern|y=1)/p(pattern|y=0)`` of the "mask" scenario when
    the test mask is label-dependent (``mnar``), from the test split's realised per-class pattern
    rates (exact counts); None otherwise (the other scenarios' presence is set by the evaluation)."""
    if missing is None or scenario != "mask" or missing.mechanism_for("test") != "mnar":
        return None
    return oracle.pattern_log_odds_from_mask(test.present, test.labels)


def oracle_predictions(oracle: Any, data: PreparedData,
                       missing: MissingSpec | None = None) -> dict[str, np.ndarray]:
    """The oracle's test predictions per scenario, in the layout methods log (``predictions.npz``),
    so the Bayes row's interval includes test-sample noise like every other row's; and the
    independent-evidence ceiling's (``ceiling_probs_<scenario>``) for a ceiling row.  ``missing``
    adds the mnar pattern term to the "mask" scenario (as ``oracle_reference`` does)."""
    test = data.splits["test"]
    out: dict[str, np.ndarray] = {"ids": test.ids.astype(str), "labels": test.labels}
    for scenario in EVAL_SCENARIOS:
        presence, term = scenario_presence(test, scenario), oracle_pattern_term(oracle, test, missing, scenario)
        out[f"probs_{scenario}"] = oracle.scores(test.table, test.rows, presence, term).astype(np.float32)
        out[f"ceiling_probs_{scenario}"] = oracle.ceiling_scores(test.table, test.rows, presence, term).astype(np.float32)
    out["present_mask"] = test.present
    return out


def leak_check(metrics: dict[str, float], reference: dict[str, float], bound_se: float = 3.0) -> str:
    """"" or why the run looks leaky: a test AUC above the Bayes oracle's AUC on the very same test
    set and masks by more than ``bound_se`` of the oracle's DeLong standard errors, which no model
    that never saw the test split can reach except by a (3-sigma) fluke."""
    auc, bayes, se = metrics.get("test_auc"), reference.get("test_auc"), reference.get("test_auc_se")
    if auc is None or bayes is None or se is None or not np.isfinite([auc, bayes, se]).all():
        return ""
    if auc > bayes + bound_se * se:
        return f"test AUC {auc:.4f} > Bayes {bayes:.4f} + {bound_se:g} x SE {se:.4f} on the same test set"
    return ""


def oracle_reference(oracle: Any, data: PreparedData, missing: MissingSpec) -> dict[str, float]:
    """Bayes AUC of the actual test set (per scenario) with its DeLong SE, the independent-evidence
    ceiling's (``ceiling_<prefix>_auc`` and ``_auc_se``), and both population values (with their
    Monte Carlo SE) under the test split's mechanism; under an ``mnar`` test mask the "mask"
    scenario's oracle includes the pattern term."""
    test = data.splits["test"]
    out: dict[str, float] = {}
    for scenario in EVAL_SCENARIOS:
        presence, term = scenario_presence(test, scenario), oracle_pattern_term(oracle, test, missing, scenario)
        probs = oracle.scores(test.table, test.rows, presence, term)
        ceiling = oracle.ceiling_scores(test.table, test.rows, presence, term)
        prefix = metric_prefix(scenario)
        for k, v in compute_metrics(data.info.task, test.labels, probs).items():
            out[f"{prefix}_{k}"] = v
        if data.info.task == "binary":
            aucs, cov = delong(test.labels, np.stack([probs[:, 1], ceiling[:, 1]]))
            out[f"{prefix}_auc_se"] = float(np.sqrt(cov[0, 0]))
            out[f"ceiling_{prefix}_auc"] = float(aucs[1])
            out[f"ceiling_{prefix}_auc_se"] = float(np.sqrt(cov[1, 1]))
    population = dict(image_share=missing.image_share, mechanism=missing.mechanism_for("test"),
                      strength=missing.strength)
    rate = missing.rate_for("test")
    out["population_auc"] = oracle.population_auc(missing.pattern, rate, **population)
    out["population_auc_se"] = oracle.population_auc_se(missing.pattern, rate, **population)
    out["population_ceiling_auc"] = oracle.population_ceiling_auc(missing.pattern, rate, **population)
    out["population_ceiling_auc_se"] = oracle.population_ceiling_auc_se(missing.pattern, rate, **population)
    return out


def evaluate_method(method: FusionMethod, data: PreparedData, device: torch.device, batch_size: int,
                    calibrator: Calibrator | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Test metrics per scenario and the per-sample predictions logged for the leaderboard.

    ``calibrator`` (fitted on the validation split by the cell runner) is applied to every
    scenario's probabilities, each row by the availability it is scored with; the metrics and the
    logged predictions are the calibrated ones.
    """
    test = data.splits["test"]
    metrics: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {"ids": test.ids.astype(str), "labels": test.labels}
    for scenario in EVAL_SCENARIOS:
        presence = scenario_presence(test, scenario)
        probs = predict(method, test, data.train_prior, device, batch_size, presence)
        if calibrator is not None:
            probs = calibrator.apply(probs, presence & test.real_present)  # as ``predict`` scored them
        predictions[f"probs_{scenario}"] = probs.astype(np.float32)
        for k, v in compute_metrics(data.info.task, test.labels, probs).items():
            metrics[f"{metric_prefix(scenario)}_{k}"] = v
    predictions["present_mask"] = test.present
    return metrics, predictions
