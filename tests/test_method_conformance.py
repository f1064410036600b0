"""One conformance suite over the whole method registry (in the spirit of scikit-learn's
``parametrize_with_checks``): every method added later passes it without new harness code."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from benchmark.data import Batch
from benchmark.training import TrainingConfig, predict, seed_everything, train_method
from methods import create_method, list_methods
from methods.base import FusionMethod, OptimizerSettings
from tests.conftest import mixed_presence

METHODS = list_methods()


def _build(name: str, data, encoder_config, seed: int = 0) -> FusionMethod:
    seed_everything(seed)
    return create_method(name, data.info, encoder_config)


def _mixed_batch(data, n: int = 24) -> Batch:
    train = data.splits["train"]
    index = np.arange(n)
    return train.batch(index, present=mixed_presence(n))


def _train_steps(method: FusionMethod, batch: Batch, steps: int = 2) -> dict[str, torch.Tensor]:
    method.train()
    opt, _ = method.configure_optimizer(OptimizerSettings(1e-3, 0.0, 2))
    out = {}
    for stage in method.stages(2):
        for _ in range(steps):
            out = method.training_step(batch, stage)
            if opt is not None and out["loss"].requires_grad:
                opt.zero_grad()
                out["loss"].backward()
                opt.step()
    return out


def _with_noise_in_absent(batch: Batch, seed: int = 1) -> Batch:
    """Same batch, but garbage where a modality is absent (the harness would put zeros)."""
    g = torch.Generator().manual_seed(seed)
    images = {}
    for v, (view, x) in enumerate(batch.images.items()):
        absent = ~batch.view_present[:, v]
        noise = torch.randn(x.shape, generator=g) * 100
        images[view] = torch.where(absent.view(-1, *([1] * (x.dim() - 1))), noise, x)
    tab_absent = ~batch.tabular_present
    tabular = torch.where(tab_absent.unsqueeze(1), torch.randn(batch.tabular.shape, generator=g) * 100, batch.tabular)
    return Batch(images, batch.view_present, tabular, batch.labels, batch.present, batch.ids)


def test_registry_is_not_empty():
    assert {"image_only", "tabular_only", "early_fusion", "late_fusion", "tabular_sklearn"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_mixed_batch_finite_loss_and_gradients(name, tiny_data, encoder_config):
    method = _build(name, tiny_data, encoder_config)
    batch = _mixed_batch(tiny_data)
    method.train()
    for stage in method.stages(2):
        losses = method.training_step(batch, stage)
        assert "loss" in losses
        loss = losses["loss"]
        assert torch.isfinite(loss), f"{name}: non-finite loss in stage {stage.name}"
        if loss.requires_grad:
            method.zero_grad()
            loss.backward()
            grads = [p.grad for p in method.parameters() if p.grad is not None]
            assert grads, f"{name}: no parameter received a gradient"
            assert all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"


@pytest.mark.parametrize("name", METHODS)
def test_probabilities_are_valid(name, tiny_data, encoder_config):
    method = _build(name, tiny_data, encoder_config)
    batch = _mixed_batch(tiny_data)
    _train_steps(method, batch, steps=1)
    method.eval()
    with torch.no_grad():
        probs = method.predict_proba(batch)
    assert probs.shape == (len(batch), tiny_data.info.num_classes)
    assert torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    if tiny_data.info.task != "multilabel":
        torch.testing.assert_close(probs.sum(1), torch.ones(len(batch)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_no_peeking_at_absent_modalities(name, tiny_data, encoder_config):
    """Garbage in an absent modality leaves predictions (and training losses) unchanged."""
    method = _build(name, tiny_data, encoder_config)
    batch = _mixed_batch(tiny_data)
    _train_steps(method, batch, steps=1)
    noisy = _with_noise_in_absent(batch)
    method.eval()
    with torch.no_grad():
        clean_probs = method.predict_proba(batch)
        noisy_probs = method.predict_proba(noisy)
    torch.testing.assert_close(clean_probs, noisy_probs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_eval_is_independent_of_batch_composition(name, tiny_data, encoder_config):
    method = _build(name, tiny_data, encoder_config)
    batch = _mixed_batch(tiny_data)
    _train_steps(method, batch, steps=1)
    method.eval()
    with torch.no_grad():
        full = method.predict_proba(batch)
        halves = torch.cat([method.predict_proba(_slice(batch, slice(0, 7))),
                            method.predict_proba(_slice(batch, slice(7, None)))])
    torch.testing.assert_close(full, halves, atol=1e-5, rtol=1e-4)


def _slice(batch: Batch, s: slice) -> Batch:
    return Batch({v: x[s] for v, x in batch.images.items()}, batch.view_present[s], batch.tabular[s],
                 batch.labels[s], batch.present[s], batch.ids[s])


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_under_seed(name, tiny_data, encoder_config):
    batch = _mixed_batch(tiny_data)
    outs = []
    for _ in range(2):
        method = _build(name, tiny_data, encoder_config, seed=3)
        _train_steps(method, batch, steps=2)
        method.eval()
        with torch.no_grad():
            outs.append(method.predict_proba(batch))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip(name, tiny_data, encoder_config):
    batch = _mixed_batch(tiny_data)
    method = _build(name, tiny_data, encoder_config, seed=0)
    _train_steps(method, batch, steps=2)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh = _build(name, tiny_data, encoder_config, seed=99)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    method.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict_proba(batch), fresh.predict_proba(batch), atol=0, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_trains_through_the_shared_loop(name, tiny_data, encoder_config):
    """One epoch through ``train_method`` + ``predict`` on masked data: the contract is complete."""
    method = _build(name, tiny_data, encoder_config)
    result = train_method(method, tiny_data, TrainingConfig(epochs=2, batch_size=32), seed=0)
    assert result.history
    probs = predict(method, tiny_data.splits["test"], tiny_data.train_prior, torch.device("cpu"), 64)
    assert probs.shape == (len(tiny_data.splits["test"]), tiny_data.info.num_classes)
    assert np.isfinite(probs).all()
