"""Spec checks for ``mdc`` (specs/modality_dropout.md, "Checks that show a faithful implementation").

Small fabricated data only: 8x8 one-channel images, 5 tabular features, no dataset files.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.batch import Batch
from core.contract import DatasetInfo, TabularColumn
from core.encoders import EncoderConfig, ImageEncoderConfig
from core.errors import ConfigError
from methods import create_method, list_methods
from methods.base import Stage
from methods.modality_dropout import ContrastiveLoss, MemoryBank

torch.set_num_threads(1)

INFO = DatasetInfo(
    name="fabricated", task="binary", class_names=("neg", "pos"), views=("v0",), image_channels=1,
    image_shape=(8, 8), tabular_columns=tuple(TabularColumn(f"x{i}", "numeric") for i in range(5)),
    tabular_features=tuple(f"x{i}" for i in range(5)),
    tabular_column_slices=tuple((i, i + 1) for i in range(5)), primary_metric="auc")
ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"))
SUPERVISED = Stage("supervised", 1)
CONTRASTIVE = Stage("contrastive", 1, select_model=False)


def make_batch(n: int = 6, present: np.ndarray | None = None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pres = torch.ones(n, 2, dtype=torch.bool) if present is None else torch.as_tensor(present, dtype=torch.bool)
    n = len(pres)
    images = torch.randn(n, 1, 8, 8, generator=g) * pres[:, :1, None, None]
    tabular = torch.randn(n, 5, generator=g) * pres[:, 1:]
    labels = torch.arange(n) % 2
    return Batch({"v0": images}, pres[:, :1].clone(), tabular, labels, pres)


def make(name: str = "mdc", seed: int = 0, **options):
    torch.manual_seed(seed)
    return create_method(name, INFO, ENC, **options)


def test_registered_ladder():
    assert {"mdc", "mdc_zero_tokens", "mdc_tokens", "mdc_tokens_unicon"} <= set(list_methods("mdc*"))
    assert make("mdc_zero_tokens").options.learnable is False
    assert make("mdc_zero_tokens").options.contrastive == "none"
    assert make("mdc_tokens").options.learnable and make("mdc_tokens").options.contrastive == "none"
    assert make("mdc_tokens_unicon").options.contrastive == "unimodal"
    assert make("mdc").options.contrastive == "fused"


def test_head_shapes_follow_the_release():
    m = make()
    c_a, c_b = m.image_encoder.out_dim, m.tabular_encoder.out_dim
    assert m.token_image.shape == (c_a,) and m.token_tabular.shape == (c_b,)
    assert torch.count_nonzero(m.token_image) == 0 and torch.count_nonzero(m.token_tabular) == 0
    assert m.hidden_dim == round((c_a + c_b) / 2)
    assert m.fuse[-1].in_features == c_a + c_b and m.fuse[-1].out_features == m.hidden_dim
    assert m.classifier.out_features == INFO.num_classes
    assert m.projection[0].out_features == m.hidden_dim and m.projection[1].out_features == 128


def test_tokens_truly_stand_in():
    """With every modality present, branch 'image' == head(f_a, t_b) and 'tabular' == head(t_a, f_b)."""
    m = make(token_init_std=0.5).eval()  # non-zero tokens so that a forgotten token would show
    batch = make_batch()
    with torch.no_grad():
        logits = m.branch_logits(batch)
        f_a, f_b = m.encode(batch)
        t_a = m.token_image.expand_as(f_a)
        t_b = m.token_tabular.expand_as(f_b)
        torch.testing.assert_close(logits["image"], m.head(f_a, t_b))
        torch.testing.assert_close(logits["tabular"], m.head(t_a, f_b))
        torch.testing.assert_close(logits["fusion"], m.head(f_a, f_b))
        assert not torch.allclose(logits["image"], logits["fusion"])
        # a truly missing image takes the same path as a replaced one
        missing = batch.with_present(torch.tensor([[False, True]] * len(batch)))
        torch.testing.assert_close(m.branch_logits(missing)["fusion"], logits["tabular"])
        torch.testing.assert_close(m.predict_proba(missing), torch.softmax(logits["tabular"], -1))


def _token_grad(m, batch: Batch, branch: str) -> tuple[torch.Tensor, torch.Tensor]:
    m.zero_grad(set_to_none=False)
    m.train()
    logits = m.branch_logits(batch)[branch]
    logits.pow(2).sum().backward()
    return m.token_image.grad.clone(), m.token_tabular.grad.clone()


def test_token_gradients_only_where_the_modality_is_replaced():
    m = make()
    full = make_batch()
    g_a, g_b = _token_grad(m, full, "fusion")
    assert torch.count_nonzero(g_a) == 0 and torch.count_nonzero(g_b) == 0
    g_a, g_b = _token_grad(m, full, "image")       # image present, tabular replaced
    assert torch.count_nonzero(g_a) == 0 and torch.count_nonzero(g_b) > 0
    g_a, g_b = _token_grad(m, full, "tabular")     # image replaced
    assert torch.count_nonzero(g_a) > 0 and torch.count_nonzero(g_b) == 0
    # fusion branch: t_a gets gradient exactly from the samples whose image is truly absent.
    # A non-constant token and no dropout: with the zero-initialised default, LayerNorm of a constant
    # vector followed by a ReLU can give an exactly zero gradient whenever dropout upstream makes
    # the normalised token negative, which made this check depend on the RNG state.
    m = make(token_init_std=0.1)
    m.eval()
    mixed = make_batch(present=np.array([[1, 1], [0, 1], [1, 1], [1, 0]]))
    m.zero_grad(set_to_none=False)
    logits = m.branch_logits(mixed)["fusion"]
    logits[[0, 2, 3]].pow(2).sum().backward(retain_graph=True)
    assert torch.count_nonzero(m.token_image.grad) == 0
    m.zero_grad(set_to_none=False)
    logits[1].pow(2).sum().backward()
    assert torch.count_nonzero(m.token_image.grad) > 0


def test_training_loss_supervises_branches_only_on_real_modalities():
    """A truly image-less sample contributes no image-branch loss (and vice versa)."""
    m = make("mdc_tokens")
    batch = make_batch(present=np.array([[1, 1], [0, 1], [1, 0], [0, 1]]))
    assert torch.isfinite(m.training_step(batch, SUPERVISED)["loss"])
    m.eval()  # no dropout: the step's losses can be recomputed from the branch logits
    with torch.no_grad():
        out_eval = m.training_step(batch, SUPERVISED)
        logits = m.branch_logits(batch)
        ce = torch.nn.functional.cross_entropy
        torch.testing.assert_close(out_eval["loss_fusion"], ce(logits["fusion"][[0]], batch.labels[[0]]))
        torch.testing.assert_close(out_eval["loss_image"], ce(logits["image"][[0, 2]], batch.labels[[0, 2]]))
        torch.testing.assert_close(out_eval["loss_tabular"],
                                   ce(logits["tabular"][[0, 1, 3]], batch.labels[[0, 1, 3]]))
        torch.testing.assert_close(out_eval["loss"], out_eval["loss_fusion"] + out_eval["loss_image"]
                                   + out_eval["loss_tabular"])


def _adamw_step(m, batch: Batch, stage: Stage) -> None:
    opt, _ = m.configure_optimizer(type("S", (), {"lr": 1e-2, "weight_decay": 1e-4, "epochs": 1})())
    m.train()
    loss = m.training_step(batch, stage)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def test_zero_fill_variant_leaves_tokens_unchanged():
    m = make("mdc_zero_tokens")
    assert "token_image" not in dict(m.named_parameters())
    batch = make_batch(present=np.array([[1, 1], [0, 1], [1, 0], [1, 1]]))
    _adamw_step(m, batch, SUPERVISED)
    assert torch.count_nonzero(m.token_image) == 0 and torch.count_nonzero(m.token_tabular) == 0
    # while learnable tokens do move under the same step
    m2 = make("mdc_tokens")
    _adamw_step(m2, batch, SUPERVISED)
    assert torch.count_nonzero(m2.token_image) > 0 and torch.count_nonzero(m2.token_tabular) > 0


def test_infonce_identities():
    loss = ContrastiveLoss("ce")
    b = 16
    same = torch.eye(b, 32)  # identical, orthonormal (well separated) pairs
    assert loss(same, same).item() < 1e-3  # (b-1) e^-10 ~ 7e-4
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(64, 4096, generator=g), dim=1)
    k = torch.nn.functional.normalize(torch.randn(64, 4096, generator=g), dim=1)
    assert abs(loss(q, k).item() - math.log(64)) < 0.1
    # memory rows are extra negatives: with b random memory rows the random loss is ~log(2b)
    mem = torch.nn.functional.normalize(torch.randn(64, 4096, generator=g), dim=1)
    assert abs(loss(q, k, mem).item() - math.log(128)) < 0.1
    # the sigmoid form: identical separated pairs give a small loss, swapped pairs a large one
    bce = ContrastiveLoss("bce")
    assert bce(same, same).item() < bce(same, same.roll(1, 0)).item()


def test_logit_scale_is_clamped_at_100():
    loss = ContrastiveLoss("ce")
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    loss.clamp_()
    assert loss.log_scale.exp().item() == pytest.approx(100.0)


def test_memory_bank_never_holds_the_current_batch():
    m = make(memory_size=8)
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    original = m.contrastive_loss.forward

    def spy(query, key, memory=None):
        seen.append((key.detach().clone(), None if memory is None else memory.detach().clone()))
        return original(query, key, memory)

    m.contrastive_loss.forward = spy  # type: ignore[method-assign]
    m.train()
    m.training_step(make_batch(4, seed=1), CONTRASTIVE)
    first = list(seen)
    assert len(first) == 6
    assert all(mem is not None and mem.shape[0] == 0 for _, mem in first)  # bank empty on step 1
    step1 = {k_name: key for (_, k_name), (key, _) in zip(m._pairs(), first)}
    for name in ("image", "tabular", "fusion"):  # enqueued after the loss: the bank = step 1's keys
        torch.testing.assert_close(m.banks[name].keys(), step1[name])
    seen.clear()
    m.training_step(make_batch(4, seed=2), CONTRASTIVE)
    for (_, k_name), (key, mem) in zip(m._pairs(), seen):
        torch.testing.assert_close(mem, step1[k_name])  # negatives = previous batch only
        assert torch.cdist(key, mem).min() > 1e-4        # no current key among them
    # the FIFO wraps: 8 slots, 3 batches of 4 -> the oldest batch is gone
    m.training_step(make_batch(4, seed=3), CONTRASTIVE)
    assert m.banks["image"].count == 8 and m.banks["image"].ptr == 4


def test_memory_bank_fifo():
    bank = MemoryBank(5, 2)
    bank.enqueue(torch.arange(6.0).view(3, 2))
    assert bank.count == 3 and bank.ptr == 3
    bank.enqueue(torch.arange(6.0, 12.0).view(3, 2))
    assert bank.count == 5 and bank.ptr == 1
    assert bank.keys()[0].tolist() == [10.0, 11.0]  # the 6th row overwrote slot 0


def test_two_stage_schedule_fits_the_budget_and_keeps_the_classifier_fresh():
    m = make()
    stages = m.stages(10)
    assert [s.name for s in stages] == ["contrastive", "supervised"]
    assert sum(s.epochs for s in stages) == 10 and stages[0].select_model is False
    assert make(pretrain_epochs=4).stages(10)[0].epochs == 4
    with pytest.raises(ConfigError, match="needs max_epochs >= 2"):  # never a silent skip of stage 1
        make().stages(1)
    assert [s.name for s in make(schedule="joint").stages(10)] == ["supervised"]
    assert [s.name for s in make("mdc_tokens").stages(10)] == ["supervised"]
    with pytest.raises(ConfigError, match="pretrain_epochs"):
        make(pretrain_epochs=10).stages(10)
    # a contrastive step trains encoders/tokens/projection but never the classifier
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _adamw_step(m, make_batch(), CONTRASTIVE)
    after = m.state_dict()
    assert torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["projection.1.weight"], after["projection.1.weight"])
    assert not torch.equal(before["token_image"], after["token_image"])


def test_joint_schedule_and_options():
    batch = make_batch(present=np.array([[1, 1], [0, 1], [1, 0], [1, 1], [1, 1]]))
    for options in ({"schedule": "joint"}, {"schedule": "joint", "criterion": "bce", "memory_size": 4},
                    {"mode": "add", "learnable": True}, {"test_time": "average"},
                    {"tabular_encoder": "ft_transformer", "ft_dim": 16, "ft_heads": 2, "ft_layers": 1}):
        m = make(**options)
        out = m.training_step(batch, SUPERVISED)
        assert torch.isfinite(out["loss"]), options
        if options.get("schedule") == "joint":
            assert "loss_contrastive" in out
        out["loss"].backward()
        m.eval()
        with torch.no_grad():
            p = m.predict_proba(batch)
        torch.testing.assert_close(p.sum(1), torch.ones(len(batch)))


def test_predict_ignores_absent_content():
    m = make(test_time="average").eval()
    pres = np.array([[1, 0], [0, 1], [1, 1]])
    a = make_batch(3, pres, seed=1)
    b = make_batch(3, pres, seed=1)
    b.images["v0"][1] += 100.0  # content of an absent image
    b.tabular[0] += 100.0       # content of an absent tabular record
    with torch.no_grad():
        torch.testing.assert_close(m.predict_proba(a), m.predict_proba(b))


def test_bad_options_name_the_option():
    with pytest.raises(ConfigError, match="mode"):
        make(mode="concat")
    with pytest.raises(ConfigError, match="branch_weights"):
        make(branch_weights=[1.0, 1.0])
    with pytest.raises(ConfigError, match="pretrain_fraction"):
        make(pretrain_fraction=1.5)
    with pytest.raises(ConfigError, match="token_init_std"):
        make("mdc_zero_tokens", token_init_std=0.1)
    with pytest.raises(ConfigError, match="unknown key 'temperature'"):
        make(temperature=0.1)


@pytest.mark.parametrize("name", ["mdc", "mdc_zero_tokens", "mdc_tokens", "mdc_tokens_unicon"])
def test_yaml_configs_match_the_code(name):
    """configs/methods/<name>.yaml: valid options equal to the class defaults, same search space."""
    import dataclasses

    from benchmark.config import method_defaults, method_search_space
    from methods import get_method_class

    cls = get_method_class(name)
    options = method_defaults(name)
    assert options, f"configs/methods/{name}.yaml has no options"
    built = make(name, **options).options
    assert built == cls.Options(), f"{name}: YAML options differ from {cls.Options.__name__} defaults"
    if name == "mdc":  # the main file lists every option
        assert set(options) == {f.name for f in dataclasses.fields(cls.Options)}
    assert method_search_space(name) == cls.search_space
    for key in cls.search_space:
        assert key.startswith("options.") and hasattr(built, key.split(".", 1)[1])


def test_memory_bank_trains_through_the_shared_loop():
    """Regression: keys() must not be a view that enqueue() overwrites before backward()."""
    from benchmark.config import TrainingConfig, method_defaults
    from benchmark.training import seed_everything, train_method
    from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
    from core.masks import MissingSpec
    from datasets import create_dataset
    from datasets.preparation import prepare_data
    from methods import create_method

    ds = create_dataset("synthetic", n_train=96, n_val=48, n_test=96, sigma_pix=0.1)
    data = prepare_data(ds, ds.load_table(), MissingSpec("mixed", 0.5, "both"), 0)
    enc = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TabularEncoderConfig(hidden=(16,), dim=16))
    seed_everything(0)
    method = create_method("mdc", data.info, enc, **{**method_defaults("mdc"), "memory_size": 64})
    result = train_method(method, data, TrainingConfig(max_epochs=3, batch_size=32), 0)
    assert len(result.history) == 3
