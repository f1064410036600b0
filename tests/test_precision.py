"""training.precision (issue 18): fp32 on CPU is the plain fp32 loop, bit for bit; bf16 and fp16
autocast on CPU too (so they are tested without a GPU); the precision is part of the run key."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from benchmark.config.loading import load_config
from benchmark.config.schema import TrainingConfig
from benchmark.grid.build import build_grid
from benchmark.training.device import seed_everything
from benchmark.training.loop import predict, train_method
from benchmark.training.precision import Precision, is_convolutional, resolve_precision
from methods import create_method
from methods.base import OptimizerSettings


def reference_epoch(method, data, cfg: TrainingConfig, seed: int) -> None:
    """One epoch of the loop as it was before precision existed: fp32, AdamW, shuffled batches."""
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    optimizer, _ = method.configure_optimizer(OptimizerSettings(lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                                epochs=cfg.max_epochs))
    (stage,) = method.stages(cfg.max_epochs)
    method.train()
    order = rng.permutation(len(train))
    for i in range(0, len(order), cfg.batch_size):
        batch = train.batch(order[i:i + cfg.batch_size], train=True)
        loss = method.training_step(batch, stage)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def trained(name, data, encoders, precision: str):
    seed_everything(0)
    method = create_method(name, data.info, encoders)
    result = train_method(method, data, TrainingConfig(max_epochs=1, batch_size=32, device="cpu", precision=precision),
                          seed=0)
    return method, result


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fp32_on_cpu_is_the_plain_loop(tiny_data, encoder_config, precision):
    method, result = trained("early_fusion", tiny_data, encoder_config, precision)
    assert result.precision == "fp32"
    seed_everything(0)
    ref = create_method("early_fusion", tiny_data.info, encoder_config)
    reference_epoch(ref, tiny_data, TrainingConfig(max_epochs=1, batch_size=32), seed=0)
    got, want = method.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precisions_train_on_cpu(tiny_data, encoder_config, precision):
    method, result = trained("late_fusion", tiny_data, encoder_config, precision)
    assert result.precision == precision
    assert all(np.isfinite(v) for r in result.history for k, v in r.items() if k.startswith("train_"))
    assert all(p.dtype == torch.float32 for p in method.parameters())  # weights stay fp32
    probs = predict(method, tiny_data.splits["test"], tiny_data.train_prior, torch.device("cpu"), 64,
                    precision=Precision(precision, torch.device("cpu")))
    assert probs.dtype == np.float64 and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-2)


def test_resolution_and_settings():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"
    cpu = Precision.for_run("auto", torch.device("cpu"), timm.create_model("test_resnet"))
    assert cpu.name == "fp32" and not cpu.channels_last and cpu.scaler() is None  # channels_last: CUDA only
    assert Precision("fp16", torch.device("cpu")).scaler() is not None
    assert is_convolutional(timm.create_model("test_resnet"))
    assert not is_convolutional(timm.create_model("test_vit"))


def test_channels_last_batch_keeps_values(tiny_data):
    batch = tiny_data.splits["train"].batch(np.arange(4), train=False)
    moved = batch.to("cpu", channels_last=True)
    for view, x in batch.images.items():
        assert moved.images[view].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(moved.images[view], x)


def test_precision_is_in_the_run_key():
    def key(precision: str) -> str:
        cfg = load_config(None, {"methods": ["late_fusion"], "seeds": [0], "missing": {"rates": [0.0]},
                                 "training": {"precision": precision}})
        return build_grid(cfg, with_oracle=False)[0].key()

    assert len({key("auto"), key("fp32"), key("bf16"), key("fp16")}) == 4
