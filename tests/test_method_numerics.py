"""Numerics pinned across the speed work of issue #20: CFCML and CMML train a few steps from one
seed and must give the losses and parameters recorded with the implementation *before* that work.

``tests/data/method_numerics_ref.pt`` was written by the pre-change code (``methods/cfcml.py`` and
``methods/cmml.py`` as they were before issue #20, this file unchanged) with::

    .venv/bin/python tests/test_method_numerics.py --record

Re-recording with the current code would only pin the current code; do it deliberately, when a
change of the computation is intended.

Each case builds a small model from a fixed seed and runs ``steps`` training steps (the method's
own ``training_step``, in training mode with every dropout on, CMML's memory bank and simulated
drops included) on fabricated batches with missing modalities, and records every loss entry of
every step, eval-mode logits on the first batch before and after training, the first step's
gradients and the final ``state_dict``.  Tensors of up to ``_FULL_LIMIT`` elements (and every
integer buffer) are stored in full, larger ones as a digest (sum, sum of squares and eight fixed
random projections, each divided by sqrt(numel)) to keep the file small.

The optimiser is plain SGD with momentum, not the methods' Adam: Adam normalises every update, so
an element whose gradient is only float noise (measured: ~1e-8 for BatchNorm biases whose shift
the next BatchNorm cancels, e.g. with ``stages: last`` at 32 px) moves by a full +-lr step either
way, and the comparison would test rounding rather than the computation.  With SGD a parameter
moves by lr x gradient, so equal parameters mean equal gradients.  Tolerances, float32: losses,
logits and parameters rtol 1e-4 / atol 1e-5 (logits atol 1e-6); first-step gradients and the
parameter updates (final - initial) rtol 1e-3 with an absolute floor far below their scale.  The
computation may be reordered (batched attention, re-associated linear maps, vectorised losses),
not changed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, ImageEncoderConfig, TabularEncoderConfig
from methods import create_method
from methods.base import Stage

torch.set_num_threads(1)

REFERENCE = Path(__file__).resolve().parent / "data" / "method_numerics_ref.pt"
_FULL_LIMIT = 256
_N_PROJ = 8
RTOL, ATOL = 1e-4, 1e-5
LR = 0.05

ENC = EncoderConfig(ImageEncoderConfig(model="test_efficientnet"), TabularEncoderConfig(hidden=(16,), dim=16))
CFCML_SMALL = {"d_model": 16, "heads": 2, "l_img": 4, "l_tab": 3}
CMML_SMALL = {"embed_dim": 32, "heads": 4, "context_tokens": 4, "crta_stages": 2, "proj_dim": 16,
              "memory_size": 16}

# name -> (method, views, task, classes, options, batch size, steps)
CASES: dict[str, tuple] = {
    "cfcml_default": ("cfcml", ("image",), "binary", 2, CFCML_SMALL, 12, 3),
    "cfcml_views_per_feature": ("cfcml", ("clinic", "derm"), "multiclass", 3,
                                {**CFCML_SMALL, "heads": 4, "tab_tokens": "per_feature", "absent_fill": "learned",
                                 "detach_early_stages": True}, 12, 3),
    "cfcml_multilabel_last": ("cfcml", ("image",), "multilabel", 3,
                              {**CFCML_SMALL, "stages": "last", "saturate": False}, 12, 3),
    "cmml_default": ("cmml", ("image",), "binary", 2, {**CMML_SMALL, "p_sim": 0.5}, 12, 4),
    "cmml_views_variant": ("cmml", ("clinic", "derm"), "multiclass", 3,
                           {**CMML_SMALL, "p_sim": 0.5, "missing_slot": "zero", "memory_top_k": 0,
                            "rec_pre_memory": True, "memory_size": 8}, 12, 4),
}


def _info(views: tuple[str, ...], task: str, k: int) -> DatasetInfo:
    return DatasetInfo(name="numerics", task=task, class_names=tuple(f"c{i}" for i in range(k)), views=views,
                       image_channels=1, image_shape=(32, 32), tabular_columns=(),
                       tabular_features=tuple(f"f{i}" for i in range(7)),
                       tabular_column_slices=((0, 1), (1, 3), (3, 4), (4, 7)), primary_metric="auc")


def _batch(info: DatasetInfo, b: int, step: int) -> Batch:
    """Step ``step``'s batch: a third of the samples lack the image, a sixth the tabular record;
    with two views, the second view is really absent for some image-present samples."""
    g = torch.Generator().manual_seed(1000 + step)
    present = torch.ones(b, 2, dtype=torch.bool)
    present[(torch.arange(b) + step) % 3 == 0, 0] = False
    present[(torch.arange(b) + step) % 6 == 1, 1] = False
    view_present = present[:, :1].expand(b, len(info.views)).clone()
    if len(info.views) > 1:
        view_present[(torch.arange(b) + step) % 4 == 2, 1] = False
        view_present &= present[:, :1]
    images = {v: torch.randn(b, 1, 32, 32, generator=g) * view_present[:, i, None, None, None]
              for i, v in enumerate(info.views)}
    tabular = torch.randn(b, 7, generator=g) * present[:, 1:]
    if info.task == "multilabel":
        labels = (torch.rand(b, info.num_classes, generator=g) > 0.5).float()
    else:
        labels = torch.arange(b) % info.num_classes
    ids = tuple(f"s{step}_{i}" for i in range(b))
    return Batch(images, view_present, tabular, labels, present, ids)


def _logits(model, batch: Batch) -> torch.Tensor:
    """Eval-mode logits (no dropout, no simulated drops, BatchNorm running statistics)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model.forward_features(batch)["logits"] if hasattr(model, "forward_features") else model(batch)
    model.train(was_training)
    return logits


def run_case(name: str) -> dict:
    """Train one case from its seed: per-step losses, eval logits on the first batch before and
    after training, the first step's gradients and the final state_dict."""
    method, views, task, k, options, b, steps = CASES[name]
    info = _info(views, task, k)
    torch.manual_seed(0)
    model = create_method(method, info, ENC, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    first = _batch(info, b, 0)
    logits = [_logits(model, first)]
    model.train()
    torch.manual_seed(1)   # dropout draws
    losses: list[dict[str, float]] = []
    grads: dict[str, torch.Tensor] = {}
    for step in range(steps):
        out = model.training_step(_batch(info, b, step), Stage("supervised", 1))
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if step == 0:
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        losses.append({key: float(value.detach()) for key, value in out.items()})
    logits.append(_logits(model, first))
    return {"losses": losses, "logits": torch.stack(logits), "grads": grads,
            "state": {key: value.detach().clone() for key, value in model.state_dict().items()}}


def _projections(numel: int) -> torch.Tensor:
    return torch.randn(_N_PROJ, numel, generator=torch.Generator().manual_seed(numel), dtype=torch.float64)


def digest(tensor: torch.Tensor) -> torch.Tensor:
    """(2 + _N_PROJ,) float64: sum, sum of squares and random projections, each / sqrt(numel)."""
    flat = tensor.detach().double().flatten()
    scale = flat.numel() ** 0.5
    return torch.cat([flat.sum().view(1), flat.square().sum().view(1), _projections(flat.numel()) @ flat]) / scale


def _is_full(tensor: torch.Tensor) -> bool:
    return tensor.numel() <= _FULL_LIMIT or not tensor.is_floating_point()


def _split(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    return {"full": {k: v for k, v in tensors.items() if _is_full(v)},
            "digest": {k: digest(v) for k, v in tensors.items() if not _is_full(v)}}


def compact(result: dict) -> dict:
    return {"losses": result["losses"], "logits": result["logits"], "grads": _split(result["grads"]),
            "state": _split(result["state"])}


def record() -> None:
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: compact(run_case(name)) for name in CASES}, REFERENCE)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1024:.0f} KiB)")


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


def _initial_state(name: str) -> dict[str, torch.Tensor]:
    method, views, task, k, options, _, _ = CASES[name]
    torch.manual_seed(0)
    return create_method(method, _info(views, task, k), ENC, **options).state_dict()


@pytest.mark.parametrize("name", list(CASES))
def test_training_matches_pre_change_reference(name, reference):
    """Losses of every step, eval logits before/after, first-step gradients, final parameters and
    buffers, and the parameter updates (final - initial) equal the pre-change run's."""
    expected = reference[name]
    result = run_case(name)
    got = compact(result)
    assert len(got["losses"]) == len(expected["losses"])
    for step, (g, e) in enumerate(zip(got["losses"], expected["losses"])):
        assert set(g) == set(e), step
        for key in e:
            torch.testing.assert_close(torch.tensor(g[key]), torch.tensor(e[key]), rtol=RTOL, atol=ATOL,
                                       msg=f"step {step} {key}")
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=RTOL, atol=1e-6)
    for part in ("grads", "state"):
        for kind in ("full", "digest"):
            assert set(got[part][kind]) == set(expected[part][kind]), (part, kind)
    # Gradients: relative to their tensor's scale, with a floor of 1e-6 of the largest gradient
    # (a gradient that is mathematically zero is float noise, ~1e-8, in either implementation).
    floor = 1e-6 * max(float(v.abs().max()) for kind in ("full", "digest") for v in expected["grads"][kind].values())
    for kind in ("full", "digest"):
        for key, value in expected["grads"][kind].items():
            atol = 1e-5 * float(value.abs().max()) + floor
            torch.testing.assert_close(got["grads"][kind][key], value, rtol=1e-3, atol=atol, msg=key)
    for key, value in expected["state"]["full"].items():
        torch.testing.assert_close(got["state"]["full"][key], value, rtol=RTOL, atol=ATOL, msg=key)
    for key, value in expected["state"]["digest"].items():
        torch.testing.assert_close(got["state"]["digest"][key], value, rtol=RTOL, atol=ATOL, msg=key)
    # The updates themselves (a parameter moves by ~lr x gradient per step, much less than its
    # value), where the stored state is in full:
    initial = _initial_state(name)
    for key, value in expected["state"]["full"].items():
        if value.is_floating_point():
            torch.testing.assert_close(result["state"][key] - initial[key], value - initial[key],
                                       rtol=1e-3, atol=1e-6, msg=f"update of {key}")


def test_parameter_counts_unchanged(reference):
    """Same parameters and buffers (names and shapes) as before: old checkpoints still load."""
    for name in CASES:
        state = _initial_state(name)
        stored = reference[name]["state"]
        assert set(state) == set(stored["full"]) | set(stored["digest"]), name
        for key, value in stored["full"].items():
            assert state[key].shape == value.shape, key
        assert sum(v.numel() for v in state.values()) == sum(
            v.numel() for v in stored["full"].values()) + sum(state[k].numel() for k in stored["digest"])


@pytest.mark.parametrize("name", ["cfcml_default", "cmml_default"])
def test_fused_adam_is_the_same_update(name):
    """configure_optimizer's Adam uses PyTorch's fused kernel; three steps of it equal the
    per-tensor implementation (the methods' optimiser before issue #20) to float32 rounding."""
    import copy

    from methods.base import OptimizerSettings

    method, views, task, k, options, _, _ = CASES[name]
    info = _info(views, task, k)
    torch.manual_seed(0)
    model = create_method(method, info, ENC, **options)
    twin = copy.deepcopy(model)
    settings = OptimizerSettings(lr=1e-3, weight_decay=1e-4, epochs=10)
    fused, _ = model.configure_optimizer(settings)
    assert isinstance(fused, torch.optim.Adam) and fused.defaults["fused"]
    plain = torch.optim.Adam(twin.parameters(), lr=fused.param_groups[0]["lr"], weight_decay=1e-4,
                             foreach=False)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=n)


if __name__ == "__main__":
    if "--record" in sys.argv:
        record()
    else:
        print(__doc__)
