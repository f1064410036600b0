"""Operator fusion baselines (``max_fusion``, ``mul_fusion``): the operators on known embeddings,
absent-modality handling in the model, training, and the YAML configs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from methods import create_method, get_method_class, list_methods
from methods.base import OptimizerSettings, Stage
from methods.operator_fusion import OperatorFusionOptions, fuse_max, fuse_product

torch.set_num_threads(1)
TAB = TabularEncoderConfig(hidden=(16,), dim=16, dropout=0.0)
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TAB)
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "methods"
INFO = DatasetInfo(name="fake", task="binary", class_names=("c0", "c1"), views=("image",), image_channels=1,
                   image_shape=(32, 32), tabular_columns=(), tabular_features=tuple(f"f{i}" for i in range(5)),
                   tabular_column_slices=(), primary_metric="auc")
NAMES = ("max_fusion", "mul_fusion")
T, F_ = True, False

Z = torch.tensor([[[1.0, -2.0, 3.0], [0.0, 5.0, -1.0]]]).expand(4, 2, 3)
PRESENT = torch.tensor([[T, T], [T, F_], [F_, T], [F_, F_]])


def test_fuse_max_on_known_embeddings():
    out = fuse_max(Z, PRESENT)
    expected = torch.tensor([[1.0, 5.0, 3.0], [1.0, -2.0, 3.0], [0.0, 5.0, -1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_fuse_product_on_known_embeddings():
    out = fuse_product(Z, PRESENT)
    expected = torch.tensor([[0.0, -10.0, -3.0], [1.0, -2.0, 3.0], [0.0, 5.0, -1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_gradients_are_finite_with_absent_modalities():
    z = Z.clone().requires_grad_(True)
    (fuse_max(z, PRESENT).sum() + fuse_product(z, PRESENT).sum()).backward()
    assert torch.isfinite(z.grad).all()
    assert (z.grad[3] == 0).all() and (z.grad[1, 1] == 0).all()    # absent entries get no gradient


def _batch(present: list[tuple[bool, bool]], seed: int = 0, shift: float = 0.0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pres = torch.tensor(present, dtype=torch.bool)
    n = len(pres)
    labels = torch.arange(n) % 2
    sign = (labels * 2 - 1).float()
    images = (torch.randn(n, 1, 32, 32, generator=g) + shift * sign.view(-1, 1, 1, 1)) * pres[:, :1, None, None]
    tabular = torch.randn(n, 5, generator=g)
    tabular[:, 0] += 2 * shift * sign
    return Batch({"image": images}, pres[:, :1].clone(), tabular * pres[:, 1:], labels, pres)


def _make(name: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    return create_method(name, INFO, ENC, **options)


@pytest.mark.parametrize("name,op", [("max_fusion", torch.maximum), ("mul_fusion", torch.mul)])
def test_model_fuses_the_projections_and_passes_a_lone_modality_through(name, op):
    m = _make(name).eval()
    batch = _batch([(T, T), (T, F_), (F_, T), (F_, F_)])
    with torch.no_grad():
        fused = m.fused(batch)
        image = m.image_proj(m.image_encoder(batch.images, batch.view_present))
        tabular = m.tabular_proj(m.tabular_encoder(batch.tabular, batch.tabular_present))
        logits = m.logits(batch)
    torch.testing.assert_close(fused[0], op(image[0], tabular[0]))
    torch.testing.assert_close(fused[1], image[1])
    torch.testing.assert_close(fused[2], tabular[2])
    torch.testing.assert_close(logits[3], m.fallback.logits)
    with torch.no_grad():
        head_in = torch.cat([fused[:3], batch.present[:3].float()], dim=1)
        torch.testing.assert_close(logits[:3], m.head(head_in))


@pytest.mark.parametrize("name", NAMES)
def test_a_few_training_steps_reduce_the_loss(name):
    m = _make(name, dropout=0.0).train()
    batch = _batch([(T, T), (T, F_), (F_, T), (T, T)] * 8, shift=1.0)
    opt, _ = m.configure_optimizer(OptimizerSettings(lr=3e-3, weight_decay=0.0, epochs=1))
    losses = []
    for _ in range(25):
        loss = m.training_step(batch, Stage())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("name,display", [("max_fusion", "Max fusion"), ("mul_fusion", "Product fusion")])
def test_yaml_config_matches_the_code(name, display):
    assert name in list_methods()
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    cls = get_method_class(name)
    assert raw["display_name"] == cls.display_name == display
    assert set(raw["options"]) == {f.name for f in dataclasses.fields(OperatorFusionOptions)}
    assert _make(name, **raw["options"]).options == OperatorFusionOptions()
    assert raw["search_space"] == cls.search_space
