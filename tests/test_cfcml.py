"""CFCML checks (spec /work/shared/specs/cfcml.md, section "Checks").

The HRM losses are compared with a plain-loop reference written directly from the spec's formulas
(sets, prototypes, multi-positive InfoNCE per anchor), not from the vectorised code.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from core.errors import ConfigError
from methods import create_method
from methods.base import OptimizerSettings, Stage
from methods.cfcml import CFCML, CFCMLOptions, hrm_losses

torch.set_num_threads(1)
SMALL = dict(d_model=16, heads=2, l_img=4, l_tab=3)
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TabularEncoderConfig(hidden=(16,), dim=16))


# ---------------------------------------------------------------------------------------------
# Plain-loop reference, from the formulas
# ---------------------------------------------------------------------------------------------
def reference_losses(f: torch.Tensor, member: torch.Tensor, present: torch.Tensor, tau: float,
                     saturate: bool, detach_prototypes: bool = False) -> dict[str, torch.Tensor]:
    b, m_count, _ = f.shape
    k_count = member.shape[1]
    z = [[f[i, m] / f[i, m].norm() for m in range(m_count)] for i in range(b)]
    sets = {(m, k): [i for i in range(b) if present[i, m] and member[i, k]]
            for m in range(m_count) for k in range(k_count)}
    u = {}
    for (m, k), idx in sets.items():
        if idx:
            mean = sum(z[i][m] for i in idx) / len(idx)
            u[m, k] = mean / mean.norm()
    c = {}
    for k in range(k_count):
        pairs = [(i, m) for m in range(m_count) for i in sets[m, k]]
        if pairs:
            mean = sum(z[i][m] for i, m in pairs) / len(pairs)
            c[k] = mean / mean.norm()
    if detach_prototypes:
        u = {key: v.detach() for key, v in u.items()}
        c = {key: v.detach() for key, v in c.items()}

    def ell(a, pos, neg):
        every = torch.stack([a @ x / tau for x in pos + neg])
        value = torch.logsumexp(every, 0) - torch.logsumexp(torch.stack([a @ x / tau for x in pos]), 0)
        if saturate:
            value = -torch.log(torch.exp(-value) + 1e-8)
        return value

    l_sam = f.new_zeros(())
    for (m, k), idx in sets.items():
        if not idx:
            continue
        total = f.new_zeros(())
        for i in idx:
            pos = ([c[k]] if k in c else []) + [u[mm, k] for mm in range(m_count) if (mm, k) in u]
            neg = [z[j][m] for j in range(b) if present[j, m] and not member[j, k]]
            total = total + ell(z[i][m], pos, neg)
        l_sam = l_sam + total / len(idx)
    l_up = f.new_zeros(())
    for (m, k), anchor in u.items():
        if k not in c:
            continue
        neg = [v for (mm, l), v in u.items() if l != k]
        l_up = l_up + ell(anchor, [c[k]], neg)
    l_up = l_up / m_count
    l_cp = f.new_zeros(())
    for k, anchor in c.items():
        pos = [u[m, k] for m in range(m_count) if (m, k) in u]
        if pos:
            l_cp = l_cp + ell(anchor, pos, [c[l] for l in c if l != k])
    l_cp = l_cp / k_count
    return {"sam": l_sam, "up": l_up, "cp": l_cp}


def _random_case(b: int, m: int, k: int, seed: int, with_missing: bool):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, m, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(b) % k
    member = torch.nn.functional.one_hot(labels, k).bool()
    present = torch.ones(b, m, dtype=torch.bool)
    if with_missing:
        present = torch.rand(b, m, generator=g) > 0.3
        present[~present.any(1), 0] = True
        present[labels == 0, m - 1] = False  # one (modality, class) pair is empty
    return f, member, present


@pytest.mark.parametrize("m,k,with_missing,saturate", [
    (m, k, miss, sat) for m, k, miss, sat in itertools.product((2, 3), (2, 3), (False, True), (True, False))])
def test_vectorised_losses_equal_loop_reference(m, k, with_missing, saturate):
    f, member, present = _random_case(10, m, k, seed=m * 10 + k, with_missing=with_missing)
    got = hrm_losses(f, member, present, tau=0.07, saturate=saturate)
    ref = reference_losses(f, member, present, tau=0.07, saturate=saturate)
    for name in ("sam", "up", "cp"):
        assert got[name].dtype == torch.float64
        torch.testing.assert_close(got[name], ref[name], atol=1e-8, rtol=0, msg=name)


def test_vectorised_losses_fp32_and_multilabel_reference():
    f, _, present = _random_case(12, 3, 3, seed=5, with_missing=True)
    member = torch.rand(12, 3, generator=torch.Generator().manual_seed(2)) > 0.5   # multilabel
    got = hrm_losses(f.float(), member, present, tau=0.07)
    ref = reference_losses(f, member, present, tau=0.07, saturate=True)
    assert got["sam"].dtype == torch.float32
    for name in ("sam", "up", "cp"):
        torch.testing.assert_close(got[name].double(), ref[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("m,k", [(2, 2), (3, 3), (2, 3)])
def test_collapse_identities(m, k):
    b = 9
    f = torch.ones(b, m, 5, dtype=torch.float64)
    labels = torch.arange(b) % k
    member = torch.nn.functional.one_hot(labels, k).bool()
    out = hrm_losses(f, member, None, tau=0.07, saturate=False)
    # every sample anchor: log(1 + |Neg|/(M+1)); L_sam sums the per-(m, k) means
    expected_sam = sum(math.log(1 + int((labels != kk).sum()) / (m + 1)) for kk in range(k)) * m
    expected_up = k * math.log(1 + m * (k - 1))            # (1/M) * M*K anchors
    expected_cp = math.log(1 + (k - 1) / m)                # (1/K) * K anchors
    torch.testing.assert_close(out["sam"].item(), expected_sam, atol=1e-10, rtol=0)
    torch.testing.assert_close(out["up"].item(), expected_up, atol=1e-10, rtol=0)
    torch.testing.assert_close(out["cp"].item(), expected_cp, atol=1e-10, rtol=0)


@pytest.mark.parametrize("saturate", [True, False])
def test_separated_clusters_give_near_zero_losses(saturate):
    m, k, b = 3, 3, 12
    labels = torch.arange(b) % k
    directions = torch.eye(8, dtype=torch.float64)[:k]
    f = directions[labels].unsqueeze(1).repeat(1, m, 1) * (1 + torch.rand(b, m, 1, dtype=torch.float64))
    out = hrm_losses(f, torch.nn.functional.one_hot(labels, k).bool(), None, tau=0.07, saturate=saturate)
    for name in ("sam", "up", "cp"):
        assert abs(out[name].item()) < 1e-3, name


def test_upstream_plus_one_shift_cancels():
    f, member, present = _random_case(10, 3, 3, seed=7, with_missing=True)
    plain = hrm_losses(f, member, present, tau=0.07)
    shifted = hrm_losses(f, member, present, tau=0.07, cos_shift=1.0)
    for name in ("sam", "up", "cp"):
        torch.testing.assert_close(plain[name], shifted[name], atol=1e-10, rtol=0)


def test_prototypes_unit_norm_crossmodal_identity_and_gradient():
    f, member, _ = _random_case(10, 3, 2, seed=3, with_missing=False)
    f.requires_grad_(True)
    out = hrm_losses(f, member, None, tau=0.07)
    torch.testing.assert_close(out["u"].norm(dim=-1), torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(out["c"].norm(dim=-1), torch.ones(2, dtype=torch.float64))
    z = torch.nn.functional.normalize(f.detach(), dim=-1)
    for k in range(2):
        total = sum(z[member[:, k], m].mean(0) for m in range(3))
        torch.testing.assert_close(out["c"][k].detach(), total / total.norm())
    # the prototypes carry gradient: the loss's gradient equals the reference's and differs from
    # the gradient obtained with detached prototypes
    total = out["sam"] + out["up"] + out["cp"]
    grad, = torch.autograd.grad(total, f)
    ref = reference_losses(f, member, torch.ones(10, 3, dtype=torch.bool), 0.07, True)
    ref_grad, = torch.autograd.grad(ref["sam"] + ref["up"] + ref["cp"], f)
    torch.testing.assert_close(grad, ref_grad, atol=1e-8, rtol=0)
    det = reference_losses(f, member, torch.ones(10, 3, dtype=torch.bool), 0.07, True, detach_prototypes=True)
    det_grad, = torch.autograd.grad(det["sam"], f)
    sam_grad, = torch.autograd.grad(hrm_losses(f, member, None, tau=0.07)["sam"], f)
    assert (sam_grad - det_grad).abs().max() > 1e-3


def test_empty_pairs_and_empty_batch_classes_are_finite_with_grad():
    f = torch.randn(6, 2, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    member = torch.nn.functional.one_hot(labels, 3).bool()      # class 2 not in the batch at all
    present = torch.ones(6, 2, dtype=torch.bool)
    present[3:, 0] = False                                        # (image, class 1) empty
    present[:3, 1] = False                                        # (tabular, class 0) empty
    out = hrm_losses(f, member, present, tau=0.07)
    total = out["sam"] + out["up"] + out["cp"]
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    # no valid anchor at all: a zero that still has a graph
    lonely = hrm_losses(f[:1], member[:1], present[:1], tau=0.07)
    assert lonely["up"].requires_grad and torch.isfinite(lonely["sam"])


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def _info(views=("image",), task="binary", k=2) -> DatasetInfo:
    return DatasetInfo(name="fake", task=task, class_names=tuple(f"c{i}" for i in range(k)), views=views,
                       image_channels=1, image_shape=(32, 32), tabular_columns=(),
                       tabular_features=tuple(f"f{i}" for i in range(7)),
                       tabular_column_slices=((0, 1), (1, 3), (3, 4), (4, 7)), primary_metric="auc")


def _batch(info: DatasetInfo, b: int = 12, seed: int = 0, present: torch.Tensor | None = None,
           view_present: torch.Tensor | None = None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = {v: torch.randn(b, 1, 32, 32, generator=g) for v in info.views}
    if info.task == "multilabel":
        labels = (torch.rand(b, info.num_classes, generator=g) > 0.5).float()
    else:
        labels = torch.arange(b) % info.num_classes
    batch = Batch(images, torch.ones(b, len(info.views), dtype=torch.bool), torch.randn(b, 7, generator=g),
                  labels, torch.ones(b, 2, dtype=torch.bool))
    if view_present is not None:
        batch = Batch({v: x * view_present[:, i].view(-1, 1, 1, 1) for i, (v, x) in enumerate(images.items())},
                      view_present, batch.tabular, labels, batch.present)
    return batch if present is None else batch.with_present(present)


def _model(info=None, **options) -> CFCML:
    torch.manual_seed(0)
    return create_method("cfcml", info or _info(), ENC, **{**SMALL, **options})


def _mixed_present(b: int) -> torch.Tensor:
    present = torch.ones(b, 2, dtype=torch.bool)
    present[0::3, 0] = False
    present[1::3, 1] = False
    return present


def _noisy(batch: Batch) -> Batch:
    g = torch.Generator().manual_seed(9)
    images = {}
    for v, (view, x) in enumerate(batch.images.items()):
        absent = ~(batch.view_present[:, v] & batch.present[:, 0])
        images[view] = torch.where(absent.view(-1, 1, 1, 1), torch.randn(x.shape, generator=g) * 50, x)
    tabular = torch.where(batch.present[:, 1:], batch.tabular, torch.randn(batch.tabular.shape, generator=g) * 50)
    return Batch(images, batch.view_present, tabular, batch.labels, batch.present)


@pytest.mark.parametrize("stages,tab_tokens", [("all", "from_encoder"), ("last", "per_feature")])
def test_shapes(stages, tab_tokens):
    info = _info(views=("clinic", "derm"), k=3)
    model = _model(info, stages=stages, tab_tokens=tab_tokens)
    out = model.forward_features(_batch(info, b=6), intermediates=True)
    g = 4 if stages == "all" else 1
    assert model.num_modalities == 3 and len(out["enhanced"]) == g
    assert out["features"].shape == (6, 3, 16)
    for m, length in enumerate((4, 4, 3)):
        assert out["enhanced"][0][m].shape == (6, 2 * length, 16)
        assert out["merged"][m].shape == (6, 2 * g * length, 16)
    assert out["logits"].shape == (6, 3)
    assert model.stage_tokens == ([64, 16, 4, 1] if g == 4 else [1])


def test_default_options_build_and_train_step():
    torch.manual_seed(0)
    model = create_method("cfcml", _info(), ENC)
    assert model.options == CFCMLOptions()
    out = model.training_step(_batch(_info(), present=_mixed_present(12)), Stage())
    assert set(out) == {"loss", "loss_ce", "loss_sam", "loss_up", "loss_cp"}
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("views,tab_tokens,fill", [(("image",), "from_encoder", "zero"),
                                                   (("clinic", "derm"), "per_feature", "learned")])
def test_absent_modality_noise_changes_nothing(views, tab_tokens, fill):
    info = _info(views=views)
    model = _model(info, tab_tokens=tab_tokens, absent_fill=fill)
    view_present = None
    if len(views) == 2:
        view_present = torch.ones(12, 2, dtype=torch.bool)
        view_present[2::4, 1] = False          # a view really absent, the other one present
    batch = _batch(info, present=_mixed_present(12), view_present=view_present)
    noisy = _noisy(batch)
    model.train()
    results = []
    for b in (batch, noisy):
        torch.manual_seed(1)                   # same dropout draws
        results.append(model.training_step(b, Stage()))
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.predict_proba(batch), model.predict_proba(noisy))


def test_absent_pair_and_absent_modality_give_finite_losses_and_grads():
    model = _model()
    labels = torch.arange(12) % 2
    present = torch.ones(12, 2, dtype=torch.bool)
    present[labels == 1, 0] = False            # no image of class 1
    for p in (present, torch.tensor([[False, True]] * 12), torch.tensor([[True, False]] * 12)):
        model.zero_grad()
        out = model.training_step(_batch(_info(), present=p), Stage())
        assert all(torch.isfinite(v) for v in out.values())
        out["loss"].backward()
        grads = [q.grad for q in model.parameters() if q.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("train", [False, True])
def test_all_ones_mask_equals_unmasked_path(train):
    info = _info(views=("clinic", "derm"))
    model = _model(info, absent_fill="learned")
    batch = _batch(info)
    model.train(train)
    torch.manual_seed(4)
    masked = model.losses(model.forward_features(batch, use_mask=True), batch.labels)
    torch.manual_seed(4)
    plain = model.losses(model.forward_features(batch, use_mask=False), batch.labels)
    for name in masked:
        assert torch.equal(masked[name], plain[name]), name


def _randomise_attention_biases(model: CFCML) -> None:
    """MultiheadAttention zero-initialises its biases: zero keys would give a zero output anyway."""
    torch.manual_seed(5)
    for name, p in model.named_parameters():
        if name.startswith("attention.") and name.endswith("bias"):
            torch.nn.init.normal_(p)


def test_no_visible_key_gives_zero_attention_and_no_nan():
    model = _model()
    _randomise_attention_biases(model)
    batch = _batch(_info(), b=6, present=torch.tensor([[True, False], [False, True]] * 3))
    out = model.forward_features(batch, intermediates=True)
    for g in range(4):
        image_attention = out["enhanced"][g][0][:, 4:]          # appended attention output
        assert torch.equal(image_attention[0::2], torch.zeros_like(image_attention[0::2]))
    assert torch.isfinite(out["logits"]).all()


def test_absent_tokens_are_hidden_from_attention():
    """A query attends only to present modalities: equal to attention over those keys alone."""
    info = _info(views=("clinic", "derm"))
    model = _model(info)
    _randomise_attention_biases(model)
    view_present = torch.ones(4, 2, dtype=torch.bool)
    view_present[0, 1] = False                          # sample 0: derm view really absent
    model.eval()
    with torch.no_grad():
        out = model.forward_features(_batch(info, b=4, view_present=view_present), intermediates=True)
        for g in range(4):
            clinic, tab = out["enhanced"][g][0][:, :4], out["enhanced"][g][2][:, :3]
            alone, _ = model.attention[g][2](tab[:1], clinic[:1], clinic[:1])
            torch.testing.assert_close(out["enhanced"][g][2][:1, 3:], alone)


@pytest.mark.parametrize("fill", ["zero", "learned"])
def test_absent_fill_before_head(fill):
    model = _model(absent_fill=fill)
    if fill == "learned":
        torch.nn.init.normal_(model.absent_vectors)
    present = _mixed_present(12)
    out = model.forward_features(_batch(_info(), present=present), intermediates=True)
    for m in range(2):
        expected = torch.zeros(16) if fill == "zero" else model.absent_vectors[m].detach()
        absent = out["filled"][~present[:, m], m].detach()
        assert torch.equal(absent, expected.expand_as(absent))
        assert torch.equal(out["filled"][present[:, m], m], out["features"][present[:, m], m])


def test_eval_needs_no_labels_and_is_batch_independent():
    model = _model()
    batch = _batch(_info(), present=_mixed_present(12))
    model.eval()
    no_labels = Batch(batch.images, batch.view_present, batch.tabular, torch.full((12,), -1), batch.present)
    with torch.no_grad():
        full = model.predict_proba(no_labels)
        again = model.predict_proba(no_labels)
        part = model.predict_proba(Batch({v: x[:5] for v, x in batch.images.items()}, batch.view_present[:5],
                                         batch.tabular[:5], batch.labels[:5], batch.present[:5]))
    assert torch.equal(full, again)
    torch.testing.assert_close(full[:5], part, atol=1e-6, rtol=1e-5)


def test_nhwc_backbone_outputs_are_normalised(monkeypatch):
    import methods.cfcml as module
    original = module.create_image_backbone

    class NHWC(torch.nn.Module):
        output_fmt = "NHWC"

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.feature_info = inner.feature_info

        def forward(self, x):
            return [o.permute(0, 2, 3, 1) for o in self.inner(x)]

    reference = _model()
    monkeypatch.setattr(module, "create_image_backbone", lambda *a, **kw: NHWC(original(*a, **kw)))
    wrapped = _model()
    assert wrapped.nhwc == [True] * 4 and reference.nhwc == [False] * 4
    wrapped.backbone.inner.load_state_dict(reference.backbone.state_dict())
    wrapped.load_state_dict({k: v for k, v in reference.state_dict().items()}
                            | {f"backbone.inner.{k[9:]}": v for k, v in reference.state_dict().items()
                               if k.startswith("backbone.")}, strict=False)
    batch = _batch(_info())
    reference.eval(), wrapped.eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped.predict_proba(batch), reference.predict_proba(batch))


def test_image_size_change_and_bad_options_fail_clearly():
    model = _model()
    batch = _batch(_info())
    small = Batch({"image": batch.images["image"][..., :16, :16]}, batch.view_present, batch.tabular,
                  batch.labels, batch.present)
    with pytest.raises(ConfigError, match="image size|fix the image size|built for"):
        model.predict_proba(small)
    with pytest.raises(ConfigError, match="unknown key 'w_foo'"):
        _model(w_foo=1.0)
    with pytest.raises(ConfigError, match="heads"):
        _model(d_model=15, heads=2)
    with pytest.raises(ConfigError, match="absent_fill"):
        _model(absent_fill="mean")


def test_multilabel_one_vs_rest_and_error_option():
    info = _info(task="multilabel", k=3)
    model = _model(info)
    out = model.training_step(_batch(info), Stage())
    assert torch.isfinite(out["loss"]) and out["loss_sam"] > 0
    with pytest.raises(ConfigError, match="multilabel"):
        _model(info, multilabel="error")
    coarse = _model(info, multilabel="error", w_sam=0.0, w_up=0.0, w_cp=0.0)   # coarse stage only
    assert set(coarse.training_step(_batch(info), Stage())) == {"loss", "loss_ce"}


def test_detach_early_stages_changes_backbone_gradients_only_through_stage_paths():
    batch = _batch(_info())
    grads = {}
    for detach in (False, True):
        model = _model(detach_early_stages=detach)
        model.train()
        torch.manual_seed(0)
        model.training_step(batch, Stage())["loss"].backward()
        grads[detach] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    first = next(n for n in grads[False] if n.startswith("backbone."))
    assert first in grads[True]                           # stage 4 still trains the whole backbone
    assert not torch.allclose(grads[False][first], grads[True][first])
    for g in range(3):                                    # early compressors still learn
        assert f"compressors.{g}.0.conv.weight" in grads[True]


def test_class_balanced_sampler():
    model = _model(_info(k=3))
    labels = np.array([0] * 50 + [1] * 8 + [2] * 3)
    batches = list(model.train_batches(labels, 16, np.random.default_rng(0)))
    assert len(batches) == math.ceil(len(labels) / 16)
    for index in batches:
        assert np.bincount(labels[index], minlength=3).tolist() == [5, 5, 5]
    seen_minor = np.unique(np.concatenate(batches)[labels[np.concatenate(batches)] == 1])
    assert len(seen_minor) == 8                           # a cycle: every sample of a class is used
    assert model.train_batches(labels, 16, np.random.default_rng(0)) is not None
    with pytest.raises(ConfigError, match="batch_size"):
        list(model.train_batches(labels, 2, np.random.default_rng(0)))
    assert _model(_info(k=3), balanced_sampler=False).train_batches(labels, 16, np.random.default_rng(0)) is None
    ml = _model(_info(task="multilabel", k=3))
    multi = np.array([[1, 0, 0]] * 20 + [[0, 1, 1]] * 5 + [[0, 0, 1]] * 5, dtype=np.float32)
    for index in ml.train_batches(multi, 12, np.random.default_rng(1)):
        assert len(np.unique(index)) == len(index) and (multi[index].sum(0) > 0).all()


def test_optimizer_and_schedule(tmp_path: Path):
    model = _model()
    opt, sched = model.configure_optimizer(OptimizerSettings(lr=1e-3, weight_decay=1e-4, epochs=50))
    assert isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    expected = [0.2, 0.4, 0.6, 0.8, 1.0] + [1.0] * 5 + [0.8] * 5 + [0.64]
    np.testing.assert_allclose(np.array(lrs) / 1e-3, expected, rtol=1e-9)
    zero = _model(warmup_from_zero=True)
    assert [zero.lr_factor(e) for e in range(6)] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    # pretrained backbone: two groups, the backbone at 0.1 x base lr
    path = tmp_path / "bb.pth"
    torch.save(model.backbone.state_dict(), path)
    pre = create_method("cfcml", _info(), EncoderConfig(ImageEncoderConfig("test_efficientnet", str(path)), ENC.tabular),
                        **SMALL)
    opt, _ = pre.configure_optimizer(OptimizerSettings(lr=1e-3, weight_decay=1e-4, epochs=50))
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.2e-4, 0.2e-3])  # warm-up 1/5
    n_backbone = sum(p.numel() for p in pre.backbone.parameters())
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == n_backbone


def test_yaml_config_matches_class():
    path = Path(__file__).resolve().parents[1] / "configs" / "methods" / "cfcml.yaml"
    config = yaml.safe_load(path.read_text())
    assert set(config) == {"options", "search_space", "training"} and config["training"] == {"lr": 0.0005}
    defaults = CFCMLOptions()
    for name, value in config["options"].items():
        assert getattr(defaults, name) == value, name
    assert config["search_space"] == CFCML.search_space
    assert config["options"]["w_sam"] == 0.04 and config["options"]["w_cp"] == 0.18


def test_per_feature_tokens_follow_the_formula():
    """Token j = sum over column j's encoded entries x_f * e_f + b_j, then shared Linear + ReLU."""
    model = _model(tab_tokens="per_feature")
    tt = model.tabular_tokens
    x = torch.randn(3, 7)
    captured = {}
    tt.compress.register_forward_hook(lambda mod, inp, out: captured.__setitem__("tokens", inp[0]))
    tt(x)
    slices = ((0, 1), (1, 3), (3, 4), (4, 7))
    manual = torch.stack([sum(x[:, f:f + 1] * tt.feature_weight[f] for f in range(a, b)) + tt.column_bias[j]
                          for j, (a, b) in enumerate(slices)], dim=1)
    torch.testing.assert_close(captured["tokens"], torch.relu(tt.shared(manual)))
    assert captured["tokens"].shape == (3, 4, 16)


# ---------------------------------------------------------------------------------------------
# Issue #20: the re-associated coarse stage computes what the explicit one computes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("views,options", [(("image",), {}), (("clinic", "derm"), {"tab_tokens": "per_feature"}),
                                           (("image",), {"stages": "last"}), (("clinic", "derm"), {"heads": 4})])
def test_fast_coarse_stage_equals_explicit_modules(views, options):
    """Features of present pairs, logits and every parameter gradient of the training loss agree
    between the fast path and the explicit (nn.MultiheadAttention, Conv1d merge) path, on a batch
    with absent images, absent records, a really absent view and rows without any visible key."""
    info = _info(views=views, k=3)
    model = _model(info, **options)
    _randomise_attention_biases(model)
    present = _mixed_present(12)
    present[3] = torch.tensor([False, True])        # tabular only: no key for its query
    view_present = None
    if len(views) == 2:
        view_present = torch.ones(12, 2, dtype=torch.bool)
        view_present[2::4, 1] = False
    batch = _batch(info, present=present, view_present=view_present)
    model.train()
    results = {}
    for explicit in (False, True):
        model.zero_grad()
        torch.manual_seed(3)                        # same dropout draws
        out = model.forward_features(batch, intermediates=explicit)
        loss = model.losses(out, batch.labels)
        loss["loss"].backward()
        results[explicit] = (out, {k: v.detach() for k, v in loss.items()},
                             {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    (fast, fast_loss, fast_grad), (ref, ref_loss, ref_grad) = results[False], results[True]
    pairs = fast["present"]
    torch.testing.assert_close(fast["features"][pairs], ref["features"][pairs], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast["logits"], ref["logits"], rtol=1e-4, atol=1e-5)
    for name in ref_loss:
        torch.testing.assert_close(fast_loss[name], ref_loss[name], rtol=1e-4, atol=1e-5, msg=name)
    assert set(fast_grad) == set(ref_grad)
    for name, grad in ref_grad.items():
        torch.testing.assert_close(fast_grad[name], grad, rtol=1e-3, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# Issue #21: a training batch with exactly one image
# ---------------------------------------------------------------------------------------------
def test_single_image_in_a_training_batch_uses_batchnorm_running_statistics():
    """One present image cannot give BatchNorm batch statistics; like every other method's encoder
    (core.encoders.encode_present) the backbone then uses its running statistics for that call."""
    model = _model()
    model.train()
    present = torch.ones(8, 2, dtype=torch.bool)
    present[1:, 0] = False                          # only sample 0 has an image
    batch = _batch(_info(), b=8, present=present)
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [m.running_mean.clone() for m in norms]
    out = model.training_step(batch, Stage())        # raised "Expected more than 1 value per channel"
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(m.training for m in norms)             # back in training mode afterwards
    assert all(torch.equal(m.running_mean, b) for m, b in zip(norms, before))   # not updated
    inputs = model._stage_inputs(batch, model.modality_presence(batch))
    model.backbone.eval()
    with torch.no_grad():
        maps = model.backbone(batch.images["image"][:1])
    for g, fmap in enumerate(maps):
        expected = fmap.permute(0, 2, 3, 1).reshape(1, model.stage_tokens[g], model.stage_channels[g])
        torch.testing.assert_close(inputs[g][0, 0], expected[0])
        assert torch.equal(inputs[g][1:], torch.zeros_like(inputs[g][1:]))
