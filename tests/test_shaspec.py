"""ShaSpec checks (spec docs/specs/shaspec.md, section "Checks")."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml

import methods.shaspec as shaspec_module
from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from core.errors import ConfigError
from methods import create_method, get_method_class
from methods.base import OptimizerSettings, Stage
from methods.shaspec import (DROPOUT_STAGE, ShaSpec, ShaSpecOptions, alignment_loss, domain_loss, fill_missing,
                             simulate_missing)

torch.set_num_threads(1)
TAB = TabularEncoderConfig(hidden=(16,), dim=16, dropout=0.0)
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TAB)
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "methods" / "shaspec.yaml"
INFO = DatasetInfo(name="fake", task="binary", class_names=("c0", "c1"), views=("image",), image_channels=1,
                   image_shape=(32, 32), tabular_columns=(), tabular_features=tuple(f"f{i}" for i in range(5)),
                   tabular_column_slices=(), primary_metric="auc")
T, F_ = True, False


def _make(seed: int = 0, **options) -> ShaSpec:
    torch.manual_seed(seed)
    return create_method("shaspec", INFO, ENC, **{"dropout": 0.0, **options})


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


# ---------------------------------------------------------------------------------------------
# The losses on constructed inputs
# ---------------------------------------------------------------------------------------------
def test_alignment_loss_hand_computed():
    shared = torch.tensor([[[1.0, 2.0], [3.0, 0.0]],      # |diff| = (2, 2)
                           [[0.0, 0.0], [1.0, -1.0]],     # |diff| = (1, 1)
                           [[9.0, 9.0], [-9.0, 9.0]]])    # tabular absent: not counted
    present = torch.tensor([[T, T], [T, T], [T, F_]])
    torch.testing.assert_close(alignment_loss(shared, present, "l1"), torch.tensor(1.5))
    torch.testing.assert_close(alignment_loss(shared, present, "mse"), torch.tensor(2.5))
    assert float(alignment_loss(shared, torch.tensor([[T, F_], [F_, T], [T, F_]]))) == 0.0


def test_alignment_loss_uses_the_codes_cycle_for_more_modalities():
    shared = torch.tensor([[[0.0], [1.0], [3.0]]])         # pairs (0,1), (1,2), (2,0): 1 + 2 + 3
    torch.testing.assert_close(alignment_loss(shared, torch.ones(1, 3, dtype=torch.bool)), torch.tensor(6.0))


def test_domain_loss_hand_computed():
    ln3 = math.log(3.0)
    logits = torch.tensor([[[0.0, 0.0], [0.0, ln3]],        # target 0: log 2; target 1: log(4/3)
                           [[ln3, 0.0], [100.0, -100.0]]])  # target 0: log(4/3); absent: not counted
    present = torch.tensor([[T, T], [T, F_]])
    expected = (math.log(2.0) + 2 * math.log(4.0 / 3.0)) / 3
    torch.testing.assert_close(domain_loss(logits, present), torch.tensor(expected))


def test_fill_missing_uses_the_present_shared_features():
    shared = torch.tensor([[[1.0, 2.0], [5.0, 6.0]], [[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [7.0, 8.0]],
                           [[0.0, 0.0], [0.0, 0.0]]])
    fused = torch.full_like(shared, -1.0)
    present = torch.tensor([[T, T], [T, F_], [F_, T], [F_, F_]])
    out = fill_missing(shared, fused, present)
    torch.testing.assert_close(out[0], fused[0])
    torch.testing.assert_close(out[1], torch.tensor([[-1.0, -1.0], [3.0, 4.0]]))   # tabular := r_image
    torch.testing.assert_close(out[2], torch.tensor([[7.0, 8.0], [-1.0, -1.0]]))   # image := r_tabular
    torch.testing.assert_close(out[3], torch.zeros(2, 2))


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def test_residual_fusion_and_reconstruction_in_the_model():
    m = _make().eval()
    batch = _batch([(T, T), (T, F_), (F_, T), (T, T)])
    with torch.no_grad():
        p = m.forward_parts(batch)
        r, s = p["shared"], p["specific"]
        fused = r + m.fusion(torch.cat([r, s], dim=-1))
    torch.testing.assert_close(p["fused"][[0, 3]], fused[[0, 3]])
    torch.testing.assert_close(p["fused"][1, 0], fused[1, 0])
    torch.testing.assert_close(p["fused"][1, 1], r[1, 0])      # missing tabular <- shared image feature
    torch.testing.assert_close(p["fused"][2, 0], r[2, 1])      # missing image <- shared tabular feature
    torch.testing.assert_close(p["fused"][2, 1], fused[2, 1])
    assert (r[1, 1] == 0).all() and (s[2, 0] == 0).all()       # absent modalities have no features
    with torch.no_grad():                                      # one shared encoder for both modalities
        img = m.image_encoder(batch.images, batch.view_present)[:1]
        torch.testing.assert_close(r[0, 0], m.shared_encoder(m.adapters[0](img))[0])


def test_fill_projection_option():
    m = _make(fill_projection=True).eval()
    batch = _batch([(T, F_), (T, T)])
    with torch.no_grad():
        p = m.forward_parts(batch)
        torch.testing.assert_close(p["fused"][0, 1], m.fill_projections[1](p["shared"][0, 0]))


def test_neither_modality_gets_the_prior():
    m = _make().eval()
    with torch.no_grad():
        logits = m.forward_parts(_batch([(F_, F_), (T, T)]))["logits"]
    torch.testing.assert_close(logits[0], m.fallback.logits)


def test_training_step_combines_losses_with_the_code_weights():
    m = _make().train()
    batch = _batch([(T, T), (T, F_), (F_, T), (T, T)])
    out = m.training_step(batch, Stage("warmup"))
    torch.testing.assert_close(out["loss"], out["loss_task"] + 0.1 * out["loss_dao"] + 0.02 * out["loss_dco"])
    p = m.forward_parts(batch)
    torch.testing.assert_close(out["loss_dao"], alignment_loss(p["shared"], batch.present))
    torch.testing.assert_close(out["loss_dco"], domain_loss(m.domain_classifier(p["specific"]), batch.present))


def test_simulated_dropout_changes_fusion_only(monkeypatch):
    """In the dropout stage the fusion path loses modalities; the auxiliary losses keep the real ones."""
    m = _make().train()
    batch = _batch([(T, T), (T, T), (F_, T), (T, F_)])
    image_only = torch.tensor([[T, F_], [T, F_], [F_, T], [T, F_]])
    monkeypatch.setattr(shaspec_module, "simulate_missing", lambda present, mode: image_only)
    out = m.training_step(batch, Stage(DROPOUT_STAGE))
    p = m.forward_parts(batch, image_only)
    torch.testing.assert_close(out["loss_task"], m.classification_loss(p["logits"], batch.labels))
    torch.testing.assert_close(out["loss_dao"], alignment_loss(p["shared"], batch.present))
    assert float(out["loss_dao"].detach()) > 0
    torch.testing.assert_close(p["fused"][0, 1], p["shared"][0, 0])   # dropped tabular filled from the image


def test_simulate_missing_frequencies_and_safety():
    torch.manual_seed(0)
    n = 20000
    present = torch.ones(n, 2, dtype=torch.bool)
    kept = simulate_missing(present, "per_sample")
    both = (kept.all(1)).float().mean()
    image_only = (kept[:, 0] & ~kept[:, 1]).float().mean()
    tabular_only = (~kept[:, 0] & kept[:, 1]).float().mean()
    assert abs(both - 0.5) < 0.02 and abs(image_only - 0.25) < 0.02 and abs(tabular_only - 0.25) < 0.02
    assert kept.any(1).all()
    single = torch.tensor([[T, F_], [F_, T]]).repeat(50, 1)
    assert torch.equal(simulate_missing(single, "per_sample"), single)   # never the last modality
    mixed = torch.tensor([[T, T]] * 30 + [[T, F_]] * 10)
    for _ in range(10):
        kept = simulate_missing(mixed, "per_batch")
        assert len(torch.unique(kept[:30], dim=0)) == 1 and kept.any(1).all()
    assert torch.equal(simulate_missing(mixed, "none"), mixed)


def test_stages_split_the_budget():
    assert [(s.name, s.epochs) for s in _make().stages(10)] == [("warmup", 3), (DROPOUT_STAGE, 7)]
    assert [(s.name, s.epochs) for s in _make(warmup_fraction=0.0).stages(4)] == [(DROPOUT_STAGE, 4)]
    assert [(s.name, s.epochs) for s in _make(random_drop="none").stages(4)] == [("supervised", 4)]


def test_a_few_training_steps_reduce_the_loss():
    m = _make().train()
    batch = _batch([(T, T), (T, F_), (F_, T), (T, T)] * 8, shift=1.0)
    opt, _ = m.configure_optimizer(OptimizerSettings(lr=3e-3, weight_decay=0.0, epochs=1))
    losses = []
    for step in range(30):
        out = m.training_step(batch, Stage("warmup" if step < 10 else DROPOUT_STAGE))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss_task"].detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses


def test_option_validation():
    with pytest.raises(ConfigError, match="warmup_fraction"):
        _make(warmup_fraction=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        _make(alpha=-1.0)
    with pytest.raises(ConfigError, match="random_drop"):
        _make(random_drop="sometimes")


def test_yaml_config_matches_the_code():
    raw = yaml.safe_load(CONFIG.read_text())
    cls = get_method_class("shaspec")
    assert cls.Options is ShaSpecOptions and raw["display_name"] == cls.display_name == "ShaSpec"
    assert set(raw["options"]) == {f.name for f in dataclasses.fields(ShaSpecOptions)}
    torch.manual_seed(0)
    assert create_method("shaspec", INFO, ENC, **raw["options"]).options == ShaSpecOptions()
    assert raw["search_space"] == cls.search_space
