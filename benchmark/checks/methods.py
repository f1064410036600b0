"""The method conformance suite, importable like scikit-learn's ``utils.estimator_checks``.

Every registered method must pass every check; a third-party author runs them on their own class:

    from benchmark.checks import METHOD_CHECKS, tiny_data, tiny_encoders
    for check in METHOD_CHECKS:
        check("my_method", tiny_data(), tiny_encoders())

Each check builds the method from the registry, so the class only needs ``@register_method``.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np
import torch

from benchmark.config.schema import TrainingConfig
from benchmark.training.device import seed_everything
from benchmark.training.loop import predict, train_method
from core.batch import Batch, PreparedData
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from core.masks import MissingSpec
from datasets import create_dataset
from methods import create_method
from methods.base import FusionMethod, OptimizerSettings

TINY_SYNTHETIC = dict(n_train=96, n_val=48, n_test=96, sigma_pix=0.1, mc_samples=20_000)
MethodCheck = Callable[[str, PreparedData, EncoderConfig], None]


def tiny_data(rate: float = 0.5, seed: int = 0) -> PreparedData:
    """Small synthetic data (96/48/96 samples, 32 px), fabricated in about a second."""
    dataset = create_dataset("synthetic", **TINY_SYNTHETIC)
    return dataset.prepare(dataset.load_table(), MissingSpec("mixed", rate, "both"), seed)


def tiny_encoders() -> EncoderConfig:
    return EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TabularEncoderConfig(hidden=(16,), dim=16))


def mixed_presence(n: int) -> np.ndarray:
    """Image missing, tabular missing and both present, interleaved."""
    present = np.ones((n, 2), bool)
    present[0::3, 0] = False
    present[1::3, 1] = False
    return present


def build(name: str, data: PreparedData, encoders: EncoderConfig, seed: int = 0) -> FusionMethod:
    seed_everything(seed)
    return create_method(name, data.info, encoders)


def mixed_batch(data: PreparedData, n: int = 24) -> Batch:
    return data.splits["train"].batch(np.arange(n), present=mixed_presence(n))


def train_steps(method: FusionMethod, batch: Batch, steps: int = 2) -> dict[str, torch.Tensor]:
    method.train()
    opt, _ = method.configure_optimizer(OptimizerSettings(1e-3, 0.0, 2))
    out: dict[str, torch.Tensor] = {}
    for stage in method.stages(2):
        for _ in range(steps):
            out = method.training_step(batch, stage)
            if opt is not None and out["loss"].requires_grad:
                opt.zero_grad()
                out["loss"].backward()
                opt.step()
    return out


def trained_for_eval(name: str, data: PreparedData, encoders: EncoderConfig) -> tuple[FusionMethod, Batch]:
    """A method after one training step on a mixed batch, in eval mode, and that batch."""
    method = build(name, data, encoders)
    batch = mixed_batch(data)
    train_steps(method, batch, steps=1)
    method.eval()
    return method, batch


def with_noise_in_absent(batch: Batch, seed: int = 1) -> Batch:
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


def sliced(batch: Batch, s: slice) -> Batch:
    return Batch({v: x[s] for v, x in batch.images.items()}, batch.view_present[s], batch.tabular[s],
                 batch.labels[s], batch.present[s], batch.ids[s])


def check_mixed_batch_finite_loss_and_gradients(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    method = build(name, data, encoders)
    batch = mixed_batch(data)
    method.train()
    for stage in method.stages(2):
        losses = method.training_step(batch, stage)
        assert "loss" in losses, f"{name}: training_step must return a 'loss'"
        loss = losses["loss"]
        assert torch.isfinite(loss), f"{name}: non-finite loss in stage {stage.name}"
        if loss.requires_grad:
            method.zero_grad()
            loss.backward()
            grads = [p.grad for p in method.parameters() if p.grad is not None]
            assert grads, f"{name}: no parameter received a gradient"
            assert all(torch.isfinite(g).all() for g in grads), f"{name}: non-finite gradient"


def check_single_image_batch(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    """A training batch where exactly one sample has an image (high missing rates, small batches):
    BatchNorm cannot use batch statistics of one sample, and no method may crash on it."""
    method = build(name, data, encoders)
    n = 8
    present = np.ones((n, 2), bool)
    present[1:, 0] = False
    batch = data.splits["train"].batch(np.arange(n), present=present)
    method.train()
    for stage in method.stages(2):
        loss = method.training_step(batch, stage)["loss"]
        assert torch.isfinite(loss), f"{name}: non-finite loss on a batch with one image"
        if loss.requires_grad:
            loss.backward()


def check_probabilities_are_valid(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    method, batch = trained_for_eval(name, data, encoders)
    with torch.no_grad():
        probs = method.predict_proba(batch)
    assert probs.shape == (len(batch), data.info.num_classes), f"{name}: probabilities of shape {probs.shape}"
    assert torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all(), f"{name}: invalid probabilities"
    if data.info.task != "multilabel":
        torch.testing.assert_close(probs.sum(1), torch.ones(len(batch)), atol=1e-5, rtol=0)


def check_no_peeking_at_absent_modalities(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    """Garbage in an absent modality leaves predictions unchanged."""
    method, batch = trained_for_eval(name, data, encoders)
    with torch.no_grad():
        clean = method.predict_proba(batch)
        noisy = method.predict_proba(with_noise_in_absent(batch))
    torch.testing.assert_close(clean, noisy, atol=1e-6, rtol=0)


def check_eval_is_independent_of_batch_composition(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    method, batch = trained_for_eval(name, data, encoders)
    with torch.no_grad():
        full = method.predict_proba(batch)
        halves = torch.cat([method.predict_proba(sliced(batch, slice(0, 7))),
                            method.predict_proba(sliced(batch, slice(7, None)))])
    torch.testing.assert_close(full, halves, atol=1e-5, rtol=1e-4)


def check_deterministic_under_seed(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    batch = mixed_batch(data)
    outs = []
    for _ in range(2):
        method = build(name, data, encoders, seed=3)
        train_steps(method, batch, steps=2)
        method.eval()
        with torch.no_grad():
            outs.append(method.predict_proba(batch))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def check_state_dict_round_trip(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    batch = mixed_batch(data)
    method = build(name, data, encoders, seed=0)
    train_steps(method, batch, steps=2)
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(name, data, encoders, seed=99)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    method.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict_proba(batch), fresh.predict_proba(batch), atol=0, rtol=0)


def check_trains_through_the_shared_loop(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    """Two epochs through ``train_method`` + ``predict`` on masked data: the contract is complete."""
    method = build(name, data, encoders)
    result = train_method(method, data, TrainingConfig(max_epochs=2, batch_size=32), seed=0)
    assert result.history, f"{name}: no epoch recorded"
    probs = predict(method, data.splits["test"], data.train_prior, torch.device("cpu"), 64)
    assert probs.shape == (len(data.splits["test"]), data.info.num_classes)
    assert np.isfinite(probs).all(), f"{name}: non-finite test probabilities"


class NoiseImages:
    """An image source of pure noise, for the poisoned copy of a test split."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        self.shape = shape
        self.rng = np.random.default_rng(seed)

    def load(self, rows: np.ndarray, view: str, train: bool) -> np.ndarray:
        return self.rng.normal(0.0, 3.0, size=(len(rows), *self.shape)).astype(np.float32)


def poisoned(data: PreparedData) -> PreparedData:
    """``data`` with its test split's labels flipped and its images and records replaced by noise."""
    test = data.splits["test"]
    labels = 1 - test.labels if test.labels.ndim == 2 else (test.labels + 1) % data.info.num_classes
    rng = np.random.default_rng(1)
    table = dataclasses.replace(test.table, images=NoiseImages(test.image_shape))
    bad = dataclasses.replace(test, labels=labels, tabular=rng.normal(0, 3, test.tabular.shape).astype(np.float32),
                              table=table)
    return dataclasses.replace(data, splits={**data.splits, "test": bad})


def check_test_split_never_reaches_training(name: str, data: PreparedData, encoders: EncoderConfig) -> None:
    """Train twice from one seed, once with the test split poisoned (labels flipped, images and
    records replaced by noise): the trained state and the validation predictions must be identical,
    or something in the method or the loop reads the test split."""
    runs = []
    for prepared in (data, poisoned(data)):
        method = build(name, prepared, encoders, seed=5)
        train_method(method, prepared, TrainingConfig(max_epochs=2, batch_size=32), seed=5)
        val = predict(method, prepared.splits["val"], prepared.train_prior, torch.device("cpu"), 64)
        runs.append((method.state_dict(), val))
    (state_a, val_a), (state_b, val_b) = runs
    assert state_a.keys() == state_b.keys(), f"{name}: the state differs in its keys"
    for key in state_a:
        a, b = state_a[key], state_b[key]
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f"{name}: {key} differs when the test split is poisoned (test data reached training)"
    np.testing.assert_array_equal(val_a, val_b, err_msg=f"{name}: validation predictions depend on the test split")


METHOD_CHECKS: tuple[MethodCheck, ...] = (
    check_mixed_batch_finite_loss_and_gradients, check_single_image_batch, check_probabilities_are_valid,
    check_no_peeking_at_absent_modalities, check_eval_is_independent_of_batch_composition,
    check_deterministic_under_seed, check_state_dict_round_trip, check_trains_through_the_shared_loop,
    check_test_split_never_reaches_training)


def check_method(name: str, data: PreparedData | None = None, encoders: EncoderConfig | None = None) -> None:
    """Run every conformance check on a registered method (raises AssertionError on the first failure)."""
    data = data if data is not None else tiny_data()
    encoders = encoders if encoders is not None else tiny_encoders()
    for check in METHOD_CHECKS:
        check(name, data, encoders)
