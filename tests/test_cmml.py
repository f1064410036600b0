"""Unit checks of the reconstructed CMML (spec /work/shared/specs/cmml.md, section 7).

Small fabricated batches, no network, a tiny timm backbone; one core.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig
from core.errors import ConfigError
from methods import create_method
from methods.cmml import CMML, CMMLOptions, supervised_contrastive_loss

torch.set_num_threads(1)

ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"))
SMALL = dict(embed_dim=32, heads=4, context_tokens=4, crta_stages=2, proj_dim=16, memory_size=16)
F_DIM = 6


def make_info(views=("image",), task="binary", classes=("neg", "pos")) -> DatasetInfo:
    return DatasetInfo("fake", task, classes, views, 1, (32, 32), (),
                       tuple(f"f{i}" for i in range(F_DIM)), (), "auc")


def make_model(info=None, seed: int = 0, **options) -> CMML:
    torch.manual_seed(seed)
    opts = {**SMALL, **options}
    return create_method("cmml", info or make_info(), ENC, **opts)


def make_batch(present: torch.Tensor, seed: int = 0, views=("image",), labels=None,
               ids: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = present.shape[0]
    images = {v: torch.randn(b, 1, 32, 32, generator=g) * present[:, :1, None, None] for v in views}
    view_present = present[:, :1].expand(b, len(views)).clone()
    tab = torch.randn(b, F_DIM, generator=g) * present[:, 1:]
    if labels is None:
        labels = torch.randint(0, 2, (b,), generator=g)
    names = tuple(f"s{seed}_{i}" for i in range(b)) if ids else ()
    return Batch(images, view_present, tab, labels, present.clone(), names)


def mixed_present(b: int = 12) -> torch.Tensor:
    present = torch.ones(b, 2, dtype=torch.bool)
    present[: b // 4, 0] = False
    present[b // 4: b // 2, 1] = False
    return present


# -- configuration ------------------------------------------------------------------------------
def test_yaml_matches_option_defaults_and_search_space():
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs/methods/cmml.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(CMMLOptions)}
    assert cfg["options"] == defaults
    assert cfg["search_space"] == CMML.search_space
    assert CMML.display_name == "CMML (reconstructed)"


def test_bad_option_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="heads"):
        make_model(embed_dim=30, heads=4)
    with pytest.raises(ConfigError, match="unknown key 'lambda_foo'"):
        make_model(lambda_foo=1.0)


# -- 1. no peeking --------------------------------------------------------------------------------
@pytest.mark.parametrize("views", [("image",), ("clinical", "dermoscopic")])
@pytest.mark.parametrize("fill", ["noise", "nan"])
def test_absent_slot_content_is_never_read(views, fill):
    model = make_model(make_info(views)).eval()
    present = mixed_present()
    batch = make_batch(present, views=views)
    # give the bank content so the memory path is exercised too
    model.enqueue(0, torch.randn(5, 32)), model.enqueue(1, torch.randn(5, 32))
    torch.nn.init.normal_(model.memory_out.weight, std=0.1)
    with torch.no_grad():
        ref = model(batch)
        value = (lambda shape: torch.full(shape, float("nan"))) if fill == "nan" else (lambda shape: torch.randn(shape) * 50)
        poked = make_batch(present, views=views)
        for v in views:
            poked.images[v][~present[:, 0]] = value(poked.images[v][~present[:, 0]].shape)
        poked.tabular[~present[:, 1]] = value(poked.tabular[~present[:, 1]].shape)
        out = model(poked)
    assert torch.equal(ref, out)
    assert torch.isfinite(out).all()


# -- 2. real features kept -------------------------------------------------------------------------
def test_present_slots_keep_real_features_and_absent_slots_read_memory():
    model = make_model().eval()
    present = mixed_present()
    batch = make_batch(present)
    model.enqueue(0, torch.randn(10, 32))
    model.enqueue(1, torch.randn(10, 32))
    with torch.no_grad():
        z_img, z_tab = model.encode(batch)
        parts = model.fuse(z_img, z_tab, present)
        z = parts["z"]
        assert torch.equal(parts["h"][present], z[present])
        # W_o is zero at init: the bank cannot matter yet
        model.memory = model.memory + torch.randn_like(model.memory)
        assert torch.equal(model.fuse(z_img, z_tab, present)["h"], parts["h"])
        torch.nn.init.normal_(model.memory_out.weight, std=0.2)
        before = model.fuse(z_img, z_tab, present)["h"]
        model.memory = model.memory + torch.randn_like(model.memory)
        after = model.fuse(z_img, z_tab, present)["h"]
    assert torch.equal(before[present], after[present])
    assert torch.equal(before[present], z[present])
    diff = (before - after).abs().sum(-1)
    assert (diff[~present] > 1e-6).all()


# -- 3. context tokens dataset-level, references instance-level ------------------------------------
def test_context_is_dataset_level_and_references_instance_level_and_batch_independent():
    model = make_model().eval()
    assert model.context.shape == (4, 32)       # no batch dimension
    present = mixed_present(8)
    batch = make_batch(present)
    model.enqueue(0, torch.randn(6, 32)), model.enqueue(1, torch.randn(6, 32))
    with torch.no_grad():
        parts = model.fuse(*model.encode(batch), present)
        ref8 = parts["reference"]
        assert ref8.shape == (8, 4, 32)
        assert (ref8[0] - ref8[1]).abs().max() > 1e-4
        for i in (0, 3, 7):
            one = Batch({k: x[i:i + 1] for k, x in batch.images.items()}, batch.view_present[i:i + 1],
                        batch.tabular[i:i + 1], batch.labels[i:i + 1], present[i:i + 1], batch.ids[i:i + 1])
            p1 = model.fuse(*model.encode(one), one.present)
            assert torch.allclose(p1["reference"][0], ref8[i], atol=1e-5)
            assert torch.allclose(p1["logits"][0], parts["logits"][i], atol=1e-5)


# -- 4. cascade residual ---------------------------------------------------------------------------
def test_cascade_is_identity_at_zero_init_and_adds_residuals():
    model = make_model(stage_zero_init=True).eval()
    s0 = torch.randn(3, 6, 32)
    with torch.no_grad():
        assert torch.equal(model.crta(s0), s0)
        for stage in model.crta.stages:
            torch.nn.init.normal_(stage.out.weight, std=0.1)
        running = s0
        for stage in model.crta.stages:
            delta = stage(running)
            assert delta.abs().max() > 1e-4
            running = running + delta            # added to, not replacing, the sequence
        assert torch.allclose(model.crta(s0), running, atol=1e-6)


# -- 5. memory rules ---------------------------------------------------------------------------------
def test_bank_receives_only_detached_real_training_features(monkeypatch):
    model = make_model(p_sim=1.0, memory_size=64).train()
    present = mixed_present(12)
    batch = make_batch(present)
    seen = {}
    original = model.encode

    def recording_encode(b):
        z = original(b)
        seen["z"] = [t.detach().clone() for t in z]
        return z

    monkeypatch.setattr(model, "encode", recording_encode)
    out = model.training_step(batch, None)
    assert out["n_simulated"] > 0                  # some real features were hidden from CRTA ...
    for m in (0, 1):
        rows = present[:, m]
        count = int(model.memory_count[m])
        assert count == int(rows.sum())            # ... but still enter the bank (real, known)
        assert torch.equal(model.memory[m, :count], seen["z"][m][rows])
    assert not model.memory.requires_grad
    out["loss"].backward()                         # the out-of-place write left autograd intact


def test_bank_unchanged_by_eval_passes():
    model = make_model(p_sim=1.0).train()
    model.training_step(make_batch(mixed_present(), seed=1), None)
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("memory")}
    model.eval()
    with torch.no_grad():
        model.predict_proba(make_batch(mixed_present(), seed=2))
        model.training_step(make_batch(mixed_present(), seed=3), None)
    for k, v in model.state_dict().items():
        if k.startswith("memory"):
            assert torch.equal(v, state[k]), k


def test_fifo_wraps_at_k_plus_one():
    model = make_model(memory_size=4)
    items = torch.arange(6, dtype=torch.float32)[:, None].expand(6, 32)
    for i in range(5):
        model.enqueue(0, items[i:i + 1], [f"id{i}"])
    assert int(model.memory_count[0]) == 4 and int(model.memory_ptr[0]) == 1
    assert model.memory[0, :, 0].tolist() == [4.0, 1.0, 2.0, 3.0]     # oldest (0) overwritten
    model.enqueue(0, items[[5, 0, 1]], ["id5", "id0", "id1"])        # a batch that wraps
    assert model.memory[0, :, 0].tolist() == [4.0, 5.0, 0.0, 1.0]
    model.enqueue(0, items[:6], [f"id{i}" for i in range(6)])        # more rows than K: last K kept
    assert sorted(model.memory[0, :, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]
    model.enqueue(0, items[:1], ["id9"])                             # ... and 2 is now the oldest
    assert sorted(model.memory[0, :, 0].tolist()) == [0.0, 3.0, 4.0, 5.0]
    assert int(model.memory_count[1]) == 0                            # other bank untouched


def test_capacity_is_number_of_distinct_training_samples_and_growth_keeps_fifo_order():
    model = make_model(memory_size=8)
    row = lambda v: torch.full((1, 32), float(v))
    model.enqueue(1, torch.cat([row(1), row(2)]), ["a", "b"])   # a1 b1
    model.enqueue(1, row(3), ["a"])                             # a seen again: ring of 2 wraps
    assert int(model.memory_capacity[1]) == 2
    assert sorted(model.memory[1, :2, 0].tolist()) == [2.0, 3.0]
    model.enqueue(1, row(4), ["c"])                             # grows to 3, keeps FIFO order
    model.enqueue(1, row(5), ["d"])                             # grows to 4
    model.enqueue(1, row(6), ["a"])                             # full ring of 4: oldest (2) goes
    assert int(model.memory_capacity[1]) == 4
    assert sorted(model.memory[1, :4, 0].tolist()) == [3.0, 4.0, 5.0, 6.0]
    model.enqueue(1, row(7), ["b"])                             # next oldest (3) goes
    assert sorted(model.memory[1, :4, 0].tolist()) == [4.0, 5.0, 6.0, 7.0]


def test_memory_restored_from_checkpoint(tmp_path):
    model = make_model(p_sim=0.5).train()
    for s in range(3):
        model.training_step(make_batch(mixed_present(), seed=s), None)
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    fresh = make_model(seed=1)
    assert int(fresh.memory_count.sum()) == 0
    fresh.load_state_dict(torch.load(path, weights_only=True))
    for name in ("memory", "memory_count", "memory_ptr", "memory_capacity", "memory_seen"):
        assert torch.equal(getattr(fresh, name), getattr(model, name)), name
    assert int(fresh.memory_count[0]) > 0
    batch = make_batch(mixed_present(), seed=9)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model.predict_proba(batch), fresh.predict_proba(batch))


# -- 6. losses ---------------------------------------------------------------------------------------
def test_rec_loss_zero_without_simulation_and_gradients_only_through_the_prediction():
    model = make_model(p_sim=0.0).train()
    out = model.training_step(make_batch(mixed_present()), None)
    assert out["loss_rec"].item() == 0.0 and torch.isfinite(out["loss"])

    model.eval()
    for stage in model.crta.stages:  # past the identity start, so slots can inform each other
        torch.nn.init.normal_(stage.out.weight, std=0.1)
    present = torch.ones(6, 2, dtype=torch.bool)
    dropped = torch.zeros(6, 2, dtype=torch.bool)
    dropped[0, 0] = dropped[1, 1] = dropped[2, 0] = True
    z_img, z_tab = (torch.randn(6, 32, requires_grad=True) for _ in range(2))
    parts = model.fuse(z_img, z_tab, present & ~dropped)
    rec = model.losses(parts, dropped, torch.zeros(6, dtype=torch.long))["loss_rec"]
    assert rec.item() > 0
    g_img, g_tab, *g_crta = torch.autograd.grad(rec, [z_img, z_tab, *model.crta.parameters()], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in g_crta)
    # a dropped slot's real feature is only the (stop-gradient) target: no gradient reaches it
    assert torch.equal(g_img[[0, 2]], torch.zeros(2, 32))
    assert torch.equal(g_tab[1], torch.zeros(32))
    # the other, present modality of a dropped sample feeds CRTA, so it does get gradient
    assert g_tab[0].abs().sum() > 0


def test_supcon_identities():
    b = 5
    v = torch.nn.functional.normalize(torch.ones(2 * b, 8), dim=-1)
    loss = supervised_contrastive_loss(v, torch.zeros(2 * b, dtype=torch.long), 0.07)
    assert loss.item() == pytest.approx(math.log(2 * b - 1), rel=1e-5)
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * b)
    raw = torch.randn(2 * b, 8, generator=g)
    centers = torch.randn(2, 8, generator=g) * 3
    spread = supervised_contrastive_loss(torch.nn.functional.normalize(raw, dim=-1), labels, 0.07)
    together = supervised_contrastive_loss(torch.nn.functional.normalize(raw * 0.1 + centers[labels], dim=-1), labels, 0.07)
    assert together < spread
    # an anchor without positives is skipped; none at all gives a graph-connected zero
    lone = torch.nn.functional.normalize(torch.randn(3, 8, requires_grad=True), dim=-1)
    zero = supervised_contrastive_loss(lone, torch.tensor([0, 1, 2]), 0.07)
    assert zero.item() == 0.0 and zero.requires_grad
    # multilabel: identical label vectors are positives
    ml = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    v2 = torch.nn.functional.normalize(torch.ones(4, 8), dim=-1)
    assert supervised_contrastive_loss(v2, ml, 0.07).item() == pytest.approx(math.log(3), rel=1e-5)


@pytest.mark.parametrize("term", ["rec", "ali", "con"])
def test_zero_lambda_removes_exactly_that_terms_gradient(term):
    model = make_model().eval()
    torch.nn.init.normal_(model.memory_out.weight, std=0.1)
    for stage in model.crta.stages:
        torch.nn.init.normal_(stage.out.weight, std=0.1)
    model.enqueue(0, torch.randn(8, 32)), model.enqueue(1, torch.randn(8, 32))
    present = torch.ones(8, 2, dtype=torch.bool)
    dropped = torch.zeros(8, 2, dtype=torch.bool)
    dropped[0, 0] = dropped[1, 1] = True
    batch = make_batch(present, labels=torch.tensor([0, 1] * 4))
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(loss):
        return [g if g is not None else torch.zeros_like(p)
                for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True), params)]

    parts = model.fuse(*model.encode(batch), present & ~dropped)
    full = model.losses(parts, dropped, batch.labels)
    weight = getattr(model.options, f"lambda_{term}")
    model.options = dataclasses.replace(model.options, **{f"lambda_{term}": 0.0})
    without = model.losses(parts, dropped, batch.labels)
    assert any(g.abs().sum() > 0 for g in grads(full[f"loss_{term}"]))  # the term does have gradient
    expected = grads(full["loss"] - weight * full[f"loss_{term}"])
    for g0, ge in zip(grads(without["loss"]), expected):
        assert torch.allclose(g0, ge, atol=1e-6)
    if term == "con":  # the projection head serves L_con only
        head = set(map(id, model.projection.parameters()))
        assert all(g.abs().sum() == 0 for g, p in zip(grads(without["loss"]), params) if id(p) in head)


# -- 7. simulation isolation and determinism -----------------------------------------------------------
def test_simulation_leaves_harness_mask_alone_and_is_off_in_eval():
    model = make_model(p_sim=1.0).train()
    present = mixed_present()
    batch = make_batch(present)
    out = model.training_step(batch, None)
    assert torch.equal(batch.present, present)
    assert out["n_simulated"].item() == int(present.all(1).sum())      # p_sim=1: every complete sample
    model.eval()
    with torch.no_grad():
        assert model.training_step(batch, None)["n_simulated"].item() == 0
        parts = model.fuse(*model.encode(batch), batch.present)
        assert torch.equal(model.predict_proba(batch), torch.softmax(parts["logits"], -1))


def test_same_seed_same_drops_and_only_complete_samples_lose_one_modality():
    present = mixed_present(40)
    runs = []
    for seed in (7, 7, 8):
        model = make_model(simulation_seed=seed, p_sim=0.5)
        runs.append([model.simulate_drops(present)[1] for _ in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))
    for dropped in runs[0]:
        assert (dropped.sum(1) <= 1).all()
        assert not dropped[~present.all(1)].any()
        assert dropped.any()


def test_default_simulation_seed_follows_the_run_seed():
    a = make_model(seed=3).simulate_drops(mixed_present(40))[1]
    b = make_model(seed=3).simulate_drops(mixed_present(40))[1]
    c = make_model(seed=4).simulate_drops(mixed_present(40))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- sampler, schedule, multilabel, learnability ------------------------------------------------------
def test_class_balanced_batches_and_multilabel_fallback():
    model = make_model()
    labels = np.array([0] * 90 + [1] * 10)
    batches = list(model.train_batches(labels, 16, np.random.default_rng(0)))
    assert len(batches) == math.ceil(100 / 16)
    for idx in batches:
        assert np.bincount(labels[idx], minlength=2).tolist() == [8, 8]
    assert model.train_batches(np.zeros((10, 3)), 4, np.random.default_rng(0)) is None
    assert make_model(class_balanced=False).train_batches(labels, 16, np.random.default_rng(0)) is None


def test_authors_schedule_warmup_then_step_decay():
    from methods.base import OptimizerSettings
    model = make_model()
    opt, sched = model.configure_optimizer(OptimizerSettings(lr=1.0, weight_decay=1e-4, epochs=50))
    assert isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5:10] == pytest.approx([1.0] * 5) and lrs[10:15] == pytest.approx([0.8] * 5)
    assert lrs[15] == pytest.approx(0.64)
    assert make_model(schedule="constant").configure_optimizer(OptimizerSettings(1.0, 0.0, 5))[1] is None


def test_multilabel_training_step_runs():
    info = make_info(task="multilabel", classes=("a", "b", "c"))
    model = make_model(info).train()
    labels = (torch.rand(8, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = model.training_step(make_batch(mixed_present(8), labels=labels), None)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    probs = model.eval().predict_proba(make_batch(mixed_present(8), labels=labels))
    assert probs.shape == (8, 3) and ((probs >= 0) & (probs <= 1)).all()


def test_learns_a_tabular_signal_and_transfers_it_to_missing_slots():
    """A short fit where only the tabular input carries the label: train loss drops and the
    classifier separates the classes on held-out samples, with and without images."""
    model = make_model(memory_size=64, schedule="constant", cls_dropout=0.0, p_sim=0.3)
    opt, _ = model.configure_optimizer(__import__("methods.base", fromlist=["x"]).OptimizerSettings(3e-3, 0.0, 1))
    g = torch.Generator().manual_seed(0)

    def data(n, seed):
        present = torch.ones(n, 2, dtype=torch.bool)
        present[: n // 4, 1] = False            # some samples lack the informative modality
        batch = make_batch(present, seed=seed, labels=torch.zeros(n, dtype=torch.long))
        batch.tabular[:, 0] = torch.where(present[:, 1], torch.randn(n, generator=g) * 0.3, 0.0)
        labels = (batch.tabular[:, 0] > 0).long()
        return Batch(batch.images, batch.view_present, batch.tabular, labels, present, batch.ids)

    model.train()
    first = None
    for step in range(40):
        out = model.training_step(data(32, step), None)
        opt.zero_grad(), out["loss"].backward(), opt.step()
        first = out["loss_cls"].item() if first is None else first
    assert out["loss_cls"].item() < first
    test = data(64, 1000)
    probs = model.eval().predict_proba(test)[:, 1].detach()
    rows = test.present[:, 1]
    acc = ((probs[rows] > 0.5).long() == test.labels[rows]).float().mean().item()
    assert acc > 0.8


# -- issue #20: the bank is written in place where that is safe ----------------------------------------
def test_bank_written_in_place_unless_this_steps_read_is_in_the_graph():
    model = make_model(p_sim=0.5, memory_size=16).train()
    model.enqueue(0, torch.randn(4, 32), [f"a{i}" for i in range(4)])
    model.enqueue(1, torch.randn(4, 32), [f"a{i}" for i in range(4)])
    storage = model.memory.data_ptr()
    model.enqueue(0, torch.randn(2, 32), ["b0", "b1"])       # no read in a graph: in place
    assert model.memory.data_ptr() == storage
    read = model.memory.clone()
    out = model.training_step(make_batch(mixed_present()), None)   # reads with grad, then writes
    assert model.memory.data_ptr() != storage                 # one copy: the graph keeps what it read
    out["loss"].backward()
    assert not torch.equal(model.memory, read)
    storage = model.memory.data_ptr()
    model.enqueue(1, torch.randn(1, 32), ["c0"])               # nothing read since: in place again
    assert model.memory.data_ptr() == storage
    # the host-side bookkeeping matches the checkpointed buffers
    state = torch.stack([model.memory_count, model.memory_ptr, model.memory_capacity, model.memory_seen])
    assert state.tolist() == model._bank_counts
