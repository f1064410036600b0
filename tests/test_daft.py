"""DAFT checks (spec docs/specs/daft.md, section "Checks")."""
from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig, create_image_backbone
from core.errors import ConfigError
from methods import create_method, get_method_class
from methods.base import OptimizerSettings, Stage
from methods.daft import DAFT, DAFTOptions, DAFTTransform

torch.set_num_threads(1)
TAB = TabularEncoderConfig(hidden=(16,), dim=16, dropout=0.0)
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TAB)
RESNET = EncoderConfig(ImageEncoderConfig(model="resnet18"), TAB)
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "methods" / "daft.yaml"


def _info(views: tuple[str, ...] = ("image",), k: int = 2) -> DatasetInfo:
    return DatasetInfo(name="fake", task="binary" if k == 2 else "multiclass",
                       class_names=tuple(f"c{i}" for i in range(k)), views=views, image_channels=1,
                       image_shape=(32, 32), tabular_columns=(), tabular_features=tuple(f"f{i}" for i in range(5)),
                       tabular_column_slices=(), primary_metric="auc")


def _batch(info: DatasetInfo, present: list[tuple[bool, bool]], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pres = torch.tensor(present, dtype=torch.bool)
    n = len(pres)
    labels = torch.arange(n) % info.num_classes
    images = {v: torch.randn(n, 1, 32, 32, generator=g) * pres[:, :1, None, None] for v in info.views}
    tabular = torch.randn(n, 5, generator=g) * pres[:, 1:]
    view_present = pres[:, :1].expand(n, len(info.views)).clone()
    return Batch(images, view_present, tabular, labels, pres)


def _make(enc: EncoderConfig = ENC, info: DatasetInfo | None = None, seed: int = 0, **options) -> DAFT:
    torch.manual_seed(seed)
    return create_method("daft", info or _info(), enc, **options)


class FixedRaw(nn.Module):
    """Stands in for the generator: returns a fixed raw output, records its input."""

    def __init__(self, raw: torch.Tensor) -> None:
        super().__init__()
        self.raw = raw
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return self.raw.expand(x.shape[0], -1)


def _plain_logits(method: DAFT, images: torch.Tensor, enc: EncoderConfig = ENC) -> torch.Tensor:
    """The unconditioned network: a fresh timm backbone with DAFT's weights (no hook) + DAFT's head."""
    plain = create_image_backbone(enc.image, images.shape[1])
    plain.load_state_dict(method.image_branch.backbone.state_dict())
    return method.head(plain.eval()(images))


# ---------------------------------------------------------------------------------------------
# The transform itself
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["linear", "tanh", "sigmoid"])
def test_zero_generator_output_is_the_identity(activation):
    t = DAFTTransform(channels=3, cond_dim=2, bottleneck=4, activation=activation)
    nn.init.zeros_(t.generator[2].weight)
    fmap, cond = torch.randn(5, 3, 4, 4), torch.randn(5, 2)
    torch.testing.assert_close(t(fmap, cond), fmap, atol=0, rtol=0)


def test_direct_form_zero_output_erases_the_map():
    """Upstream's alpha = act(g): a zero generator output gives alpha = 0 (why residual is our default)."""
    t = DAFTTransform(3, 2, 4, scale_form="direct")
    nn.init.zeros_(t.generator[2].weight)
    assert t(torch.randn(2, 3, 4, 4), torch.randn(2, 2)).abs().max() == 0


def test_scale_and_shift_are_applied_per_channel():
    g_scale, g_shift = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.0, -3.0])
    fmap, cond = torch.randn(4, 3, 2, 5), torch.randn(4, 2)
    cases = {
        ("residual", "linear"): 1 + g_scale,
        ("residual", "tanh"): 1 + torch.tanh(g_scale),
        ("residual", "sigmoid"): 2 * torch.sigmoid(g_scale),
        ("direct", "linear"): g_scale,
        ("direct", "tanh"): torch.tanh(g_scale),
        ("direct", "sigmoid"): torch.sigmoid(g_scale),
    }
    for (form, act), alpha in cases.items():
        t = DAFTTransform(3, 2, 4, activation=act, scale_form=form)
        t.generator = FixedRaw(torch.cat([g_scale, g_shift]).unsqueeze(0))
        expected = fmap * alpha.view(1, 3, 1, 1) + g_shift.view(1, 3, 1, 1)
        torch.testing.assert_close(t(fmap, cond), expected)
    scale_only = DAFTTransform(3, 2, 4, shift=False)
    scale_only.generator = FixedRaw(g_scale.unsqueeze(0))
    torch.testing.assert_close(scale_only(fmap, cond), fmap * (1 + g_scale).view(1, 3, 1, 1))
    shift_only = DAFTTransform(3, 2, 4, scale=False)
    shift_only.generator = FixedRaw(g_shift.unsqueeze(0))
    torch.testing.assert_close(shift_only(fmap, cond), fmap + g_shift.view(1, 3, 1, 1))


def test_generator_reads_the_pooled_map_and_the_condition_and_can_be_switched_off():
    t = DAFTTransform(3, 2, 4)
    spy = FixedRaw(torch.ones(1, 6))
    t.generator = spy
    fmap, cond = torch.randn(4, 3, 2, 5), torch.randn(4, 2)
    out = t(fmap, cond, active=torch.tensor([True, False, True, False]))
    torch.testing.assert_close(spy.seen, torch.cat([fmap.mean(dim=(2, 3)), cond], dim=1))
    torch.testing.assert_close(out[[1, 3]], fmap[[1, 3]], atol=0, rtol=0)
    torch.testing.assert_close(out[[0, 2]], fmap[[0, 2]] * 2 + 1)


def test_generator_shape_follows_the_code():
    """Linear(C + T -> int((C + T) / 7), no bias) -> ReLU -> Linear(-> 2C, no bias)."""
    m = _make()
    gen = m.image_branch.transform.generator
    c = m.image_branch.transform.channels          # test_efficientnet: bn1 of the last block
    assert c == 192 and gen[0].in_features == c + 16
    assert gen[0].out_features == int((c + 16) / 7.0) and gen[2].out_features == 2 * c
    assert gen[0].bias is None and gen[2].bias is None
    assert _make(bottleneck_dim=5).image_branch.transform.generator[0].out_features == 5
    assert _make(tabular_input="raw").image_branch.transform.generator[0].in_features == c + 5


# ---------------------------------------------------------------------------------------------
# Where it sits in the network
# ---------------------------------------------------------------------------------------------
def test_last_block_is_upstream_location_3_on_resnet18():
    """The hook reproduces a hand-written BasicBlock with the transform between bn1 and act1."""
    m = _make(RESNET).eval()
    c = m.image_branch.transform.channels
    assert c == 512
    raw = torch.cat([torch.linspace(-0.5, 0.5, c), torch.linspace(-1, 1, c)]).unsqueeze(0)
    m.image_branch.transform.generator = FixedRaw(raw)
    x = torch.randn(3, 1, 32, 32)
    bb = m.image_branch.backbone
    with torch.no_grad():
        branch = m.image_branch
        branch.image_shape = (1, 32, 32)
        got = branch(branch.pack(x, torch.zeros(3, 16), torch.ones(3, dtype=torch.bool)))
        h = bb.maxpool(bb.act1(bb.bn1(bb.conv1(x))))
        h = bb.layer4[0](bb.layer3(bb.layer2(bb.layer1(h))))
        block = bb.layer4[1]
        bn = block.bn1                        # hooked: evaluate it by hand (eval-mode BatchNorm)
        out = nn.functional.batch_norm(block.conv1(h), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                       False, 0.0, bn.eps)
        out = out * (1 + raw[:, :c]).view(1, c, 1, 1) + raw[:, c:].view(1, c, 1, 1)
        out = block.bn2(block.conv2(torch.relu(out)))
        expected = torch.relu(out + h).mean(dim=(2, 3))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert branch._context is None            # the hook's context never outlives DAFT's call
    with pytest.raises(RuntimeError, match="outside"):
        bb(x)


@pytest.mark.parametrize("location", ["last_block", "final_map"])
def test_zero_generator_gives_the_plain_image_network(location):
    m = _make(location=location).eval()
    nn.init.zeros_(m.image_branch.transform.generator[2].weight)
    batch = _batch(_info(), [(True, True)] * 4)
    with torch.no_grad():
        plain = _plain_logits(m, batch.images["image"])
        torch.testing.assert_close(m.forward_parts(batch)["main"], plain, atol=1e-6, rtol=1e-5)


def test_final_map_transforms_before_timm_pooling():
    m = _make(location="final_map").eval()
    c = m.image_branch.transform.channels
    assert c == m.image_branch.backbone.num_features
    raw = torch.cat([torch.full((c,), 0.5), torch.full((c,), -0.25)]).unsqueeze(0)
    m.image_branch.transform.generator = FixedRaw(raw)
    batch = _batch(_info(), [(True, True)] * 3)
    bb = m.image_branch.backbone
    with torch.no_grad():
        fmap = bb.forward_features(batch.images["image"])
        expected = m.head(bb.forward_head(fmap * 1.5 - 0.25, pre_logits=True))
        torch.testing.assert_close(m.forward_parts(batch)["main"], expected, atol=1e-6, rtol=1e-5)


def test_hooked_model_survives_deepcopy_and_pickle():
    m = _make().eval()
    batch = _batch(_info(), [(True, True), (True, False)])
    with torch.no_grad():
        expected = m.predict_proba(batch)
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            torch.testing.assert_close(clone.predict_proba(batch), expected, atol=0, rtol=0)
            assert clone.image_branch._context is None


def test_backbone_without_bn1_block_asks_for_final_map():
    with pytest.raises(ConfigError, match="final_map"):
        _make(EncoderConfig(ImageEncoderConfig(model="convnext_atto"), ENC.tabular))


# ---------------------------------------------------------------------------------------------
# Missing modalities
# ---------------------------------------------------------------------------------------------
def test_absent_tabular_record_is_the_identity_transform():
    m = _make().eval()
    nn.init.normal_(m.image_branch.transform.generator[2].weight, std=0.5)
    batch = _batch(_info(), [(True, False), (True, True), (True, False), (True, True)])
    with torch.no_grad():
        main = m.forward_parts(batch)["main"]
        plain = _plain_logits(m, batch.images["image"])
    torch.testing.assert_close(main[[0, 2]], plain[[0, 2]], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(main[[1, 3]], plain[[1, 3]], atol=1e-4)


def test_learned_absent_tabular_vector_feeds_the_generator():
    m = _make(absent_tabular="learned").eval()
    with torch.no_grad():
        m.absent_tabular_vector.fill_(0.7)
    batch = _batch(_info(), [(True, False), (True, True)])
    cond, active = m.conditioning(batch, m.tabular_encoder(batch.tabular, batch.tabular_present))
    assert active.all()
    torch.testing.assert_close(cond[0], torch.full((16,), 0.7))


def test_absent_image_uses_the_tabular_head_and_neither_the_prior():
    m = _make().eval()
    batch = _batch(_info(), [(False, True), (True, True), (False, False)])
    with torch.no_grad():
        logits = m.forward_parts(batch)["logits"]
        tab = m.tabular_head(m.tabular_encoder(batch.tabular))
    torch.testing.assert_close(logits[0], tab[0])
    torch.testing.assert_close(logits[2], m.fallback.logits)


def test_tabular_aux_loss_only_on_rows_with_both_modalities():
    batch = _batch(_info(), [(True, True), (True, False), (False, True), (True, True)])
    m = _make().train()
    out = m.training_step(batch, Stage())
    torch.testing.assert_close(out["loss"], out["loss_task"] + out["loss_tabular_aux"])
    with torch.no_grad():
        tab = m.tabular_head(m.tabular_encoder(batch.tabular))
    expected = m.classification_loss(tab, batch.labels, torch.tensor([True, False, False, True]))
    torch.testing.assert_close(out["loss_tabular_aux"], expected)
    assert "loss_tabular_aux" not in _make(tabular_aux_weight=0.0).training_step(batch, Stage())


def test_learned_map_for_absent_images():
    with pytest.raises(ConfigError, match="final_map"):
        _make(absent_image="learned_map")
    m = _make(location="final_map", absent_image="learned_map").eval()
    c = m.image_branch.transform.channels
    with torch.no_grad():
        m.absent_image_map.copy_(torch.linspace(-1, 1, c))
    batch = _batch(_info(), [(False, True), (True, True)])
    with torch.no_grad():
        logits = m.forward_parts(batch)["logits"]
        cond = m.tabular_encoder(batch.tabular)[:1]
        fmap = m.absent_image_map.view(1, c, 1, 1)
        expected = m.head(m.image_branch.pool(m.image_branch.transform(fmap, cond)))
    torch.testing.assert_close(logits[:1], expected, atol=1e-6, rtol=1e-5)


def test_multi_view_average_over_present_views():
    info = _info(views=("a", "b"))
    m = _make(info=info).eval()
    nn.init.normal_(m.image_branch.transform.generator[2].weight, std=0.5)
    batch = _batch(info, [(True, True), (True, True)])
    batch.view_present[1, 1] = False
    with torch.no_grad():
        tab = m.tabular_encoder(batch.tabular)
        cond, active = m.conditioning(batch, tab)
        both = m.image_features(batch, cond, active)
        singles = []
        for view in ("a", "b"):
            one = Batch({"image": batch.images[view]}, torch.ones(2, 1, dtype=torch.bool), batch.tabular,
                        batch.labels, batch.present)
            m.views = ("image",)
            singles.append(m.image_features(one, cond, active))
            m.views = ("a", "b")
    torch.testing.assert_close(both[0], (singles[0][0] + singles[1][0]) / 2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both[1], singles[0][1], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Training, options, config
# ---------------------------------------------------------------------------------------------
def _fabricated(n: int = 32, seed: int = 0) -> Batch:
    """Labels carried by the image mean and by the first tabular column; mixed presence."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    sign = (labels * 2 - 1).float()
    present = torch.ones(n, 2, dtype=torch.bool)
    present[0::4, 0] = False
    present[1::4, 1] = False
    images = (torch.randn(n, 1, 32, 32, generator=g) + sign.view(-1, 1, 1, 1)) * present[:, :1, None, None]
    tabular = torch.randn(n, 5, generator=g)
    tabular[:, 0] += 2 * sign
    return Batch({"image": images}, present[:, :1].clone(), tabular * present[:, 1:], labels, present)


@pytest.mark.parametrize("location", ["last_block", "final_map"])
def test_a_few_training_steps_reduce_the_loss(location):
    m = _make(location=location).train()
    batch = _fabricated()
    opt, _ = m.configure_optimizer(OptimizerSettings(lr=3e-3, weight_decay=0.0, epochs=1))
    losses = []
    for _ in range(25):
        loss = m.training_step(batch, Stage())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_option_validation():
    with pytest.raises(ConfigError, match="scale and shift"):
        _make(scale=False, shift=False)
    with pytest.raises(ConfigError, match="bottleneck_factor"):
        _make(bottleneck_factor=0.0)
    with pytest.raises(ConfigError, match="unknown key 'film_location'"):
        _make(film_location=3)


def test_yaml_config_matches_the_code():
    raw = yaml.safe_load(CONFIG.read_text())
    cls = get_method_class("daft")
    assert cls.Options is DAFTOptions and raw["display_name"] == cls.display_name == "DAFT"
    assert set(raw["options"]) == {f.name for f in dataclasses.fields(DAFTOptions)}
    assert _make(**raw["options"]).options == DAFTOptions()
    assert raw["search_space"] == cls.search_space
