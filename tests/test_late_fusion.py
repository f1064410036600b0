"""Late fusion's per-branch model selection and validation temperature scaling.

The training loop's ``selection_groups`` / ``fit_on_validation`` hooks are exercised through the
method that uses them; the checks recompute what the loop should have kept from scratch.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from benchmark.config import TrainingConfig
from benchmark.training import group_validation_score, predict, seed_everything, train_method
from core.metrics import compute_metrics
from methods import create_method

CPU = torch.device("cpu")


def _trained(tiny_data, encoder_config, **options):
    seed_everything(0)
    method = create_method("late_fusion", tiny_data.info, encoder_config, **options)
    snapshots: list[dict[str, torch.Tensor]] = []
    original = method.on_epoch_end

    def keep_state(epoch, stage):  # the state the loop scores after this epoch
        original(epoch, stage)
        snapshots.append(copy.deepcopy(method.state_dict()))

    method.on_epoch_end = keep_state
    result = train_method(method, tiny_data, TrainingConfig(max_epochs=4, batch_size=16, lr=3e-3), seed=0)
    return method, result, snapshots


def test_each_branch_keeps_the_state_of_its_own_best_validation_epoch(tiny_data, encoder_config):
    method, result, snapshots = _trained(tiny_data, encoder_config, calibration="none")
    assert set(result.group_best_epochs) == {"image", "tabular"}
    state = method.state_dict()
    for name, prefixes in {"image": ("image_encoder.", "image_head."),
                           "tabular": ("tabular_encoder.", "tabular_head.")}.items():
        scores = [record[f"val_auc_{name}"] for record in result.history]
        best = int(np.argmax(scores))
        assert result.group_best_epochs[name] == best
        keys = [k for k in state if k.startswith(prefixes)]
        assert keys
        for k in keys:
            torch.testing.assert_close(state[k], snapshots[best][k], atol=0, rtol=0)
        # and the kept branch scores what the history says it scored
        group = method.selection_groups()[name]
        assert group_validation_score(method, tiny_data, group, CPU, 64) == pytest.approx(scores[best])


def test_joint_selection_keeps_one_epoch_for_the_whole_model(tiny_data, encoder_config):
    method, result, snapshots = _trained(tiny_data, encoder_config, selection="joint", calibration="none")
    assert result.group_best_epochs == {}
    assert not any("val_auc_image" in r for r in result.history)
    best = int(np.argmax([r["val_auc"] for r in result.history]))
    for k, v in method.state_dict().items():
        torch.testing.assert_close(v, snapshots[best][k], atol=0, rtol=0)


def _branch_nll(method, data, branch: int, log_t: float) -> float:
    """Validation NLL of one branch at a given log temperature, recomputed outside the method."""
    val = data.splits["val"]
    rows = np.flatnonzero(val.present[:, branch])
    batch = val.batch(rows)
    with torch.no_grad():
        logits = method.branch_logits(batch)[branch]
        return float(torch.nn.functional.cross_entropy(logits / np.exp(log_t), batch.labels))


def test_temperature_minimises_validation_nll_and_keeps_branch_rankings(tiny_data, encoder_config):
    method, result, _ = _trained(tiny_data, encoder_config)
    log_t = method.log_temperature.clone()
    assert torch.all(log_t.abs() <= 5.0) and torch.any(log_t != 0)
    for branch in (0, 1):
        fitted = _branch_nll(method, tiny_data, branch, float(log_t[branch]))
        for other in (-1.0, -0.3, 0.0, 0.3, 1.0):
            # the search is bounded to log T in [-5, 5]: a branch that knows nothing runs to the bound
            candidate = float(np.clip(float(log_t[branch]) + other, -5.0, 5.0))
            assert fitted <= _branch_nll(method, tiny_data, branch, candidate) + 1e-6
    # a branch alone ranks the same with and without its temperature
    test = tiny_data.splits["test"]
    image_only = np.tile([True, False], (len(test), 1))
    calibrated = predict(method, test, tiny_data.train_prior, CPU, 64, present=image_only)
    method.log_temperature.zero_()
    raw = predict(method, test, tiny_data.train_prior, CPU, 64, present=image_only)
    rows = test.real_present[:, 0]
    # Near the search bound (an uninformative branch, T ~ e^5) float32 probabilities round to ~0.5001
    # and tie; the ranking is checked on the float64 margins the probabilities are a monotone map of.
    batch = test.batch(np.flatnonzero(rows), present=image_only[rows])
    with torch.no_grad():
        logits = method.branch_logits(batch)[0].double()
    margin = (logits[:, 1] - logits[:, 0]).numpy()
    scaled = margin / float(np.exp(float(log_t[0])))
    assert np.array_equal(np.argsort(scaled, kind="stable"), np.argsort(margin, kind="stable"))
    np.testing.assert_allclose(raw[rows, 1], 1 / (1 + np.exp(-margin)), rtol=1e-4)
    np.testing.assert_allclose(calibrated[rows, 1], 1 / (1 + np.exp(-scaled)), rtol=1e-4)  # T is applied
    # the returned validation score is that of the calibrated model the loop hands back
    method.log_temperature.copy_(log_t)
    val = tiny_data.splits["val"]
    probs = predict(method, val, tiny_data.train_prior, CPU, 64)
    assert result.best_val == pytest.approx(compute_metrics(tiny_data.info.task, val.labels, probs)["auc"])


def test_calibration_never_sees_masked_validation_data(tiny_data, encoder_config):
    """Noise written into masked-out validation inputs leaves the fitted temperatures unchanged."""
    method, _, _ = _trained(tiny_data, encoder_config)
    fitted = method.log_temperature.clone()
    val = tiny_data.splits["val"]
    noisy = copy.copy(val)
    noisy.tabular = val.tabular.copy()
    hidden = ~val.present[:, 1]
    assert hidden.any()
    noisy.tabular[hidden] = np.random.default_rng(1).normal(size=noisy.tabular[hidden].shape) * 50
    method.fit_on_validation(noisy.batch(np.arange(len(noisy))) for _ in range(1))
    torch.testing.assert_close(method.log_temperature, fitted)


def test_unknown_option_values_are_rejected(tiny_data, encoder_config):
    with pytest.raises(Exception, match="selection"):
        create_method("late_fusion", tiny_data.info, encoder_config, selection="best")
    with pytest.raises(Exception, match="calibration"):
        create_method("late_fusion", tiny_data.info, encoder_config, calibration="platt")
