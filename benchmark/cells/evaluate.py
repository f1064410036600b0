"""Evaluation of one cell on its test split: the scenarios, the trained model, the Bayes reference."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from benchmark.training.loop import predict
from core.batch import PreparedData, SplitData
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


def oracle_predictions(oracle: Any, data: PreparedData) -> dict[str, np.ndarray]:
    """The oracle's test predictions per scenario, in the layout methods log (``predictions.npz``),
    so the Bayes row's interval includes test-sample noise like every other row's."""
    test = data.splits["test"]
    out: dict[str, np.ndarray] = {"ids": test.ids.astype(str), "labels": test.labels}
    for scenario in EVAL_SCENARIOS:
        out[f"probs_{scenario}"] = oracle.scores(test.table, test.rows, scenario_presence(test, scenario)).astype(np.float32)
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
    """Bayes AUC of the actual test set (per scenario) with its DeLong SE, and the population value."""
    test = data.splits["test"]
    out: dict[str, float] = {}
    for scenario in EVAL_SCENARIOS:
        probs = oracle.scores(test.table, test.rows, scenario_presence(test, scenario))
        prefix = metric_prefix(scenario)
        for k, v in compute_metrics(data.info.task, test.labels, probs).items():
            out[f"{prefix}_{k}"] = v
        if data.info.task == "binary":
            _, cov = delong(test.labels, probs[:, 1])
            out[f"{prefix}_auc_se"] = float(np.sqrt(cov[0, 0]))
    out["population_auc"] = oracle.population_auc(missing.pattern, missing.rate_for("test"),
                                                  image_share=missing.image_share)
    return out


def evaluate_method(method: FusionMethod, data: PreparedData, device: torch.device,
                    batch_size: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Test metrics per scenario and the per-sample predictions logged for the leaderboard."""
    test = data.splits["test"]
    metrics: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {"ids": test.ids.astype(str), "labels": test.labels}
    for scenario in EVAL_SCENARIOS:
        probs = predict(method, test, data.train_prior, device, batch_size, scenario_presence(test, scenario))
        predictions[f"probs_{scenario}"] = probs.astype(np.float32)
        for k, v in compute_metrics(data.info.task, test.labels, probs).items():
            metrics[f"{metric_prefix(scenario)}_{k}"] = v
    predictions["present_mask"] = test.present
    return metrics, predictions
