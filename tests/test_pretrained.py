"""Pretrained image encoders through timm's own pretrained path, offline (issue 18).

A small timm model's weights are saved to a file and loaded back with ``pretrained_file``
(``pretrained_cfg_overlay=dict(file=...)``); ``pretrained: true`` by name is checked with the hub
unreachable and an empty HF cache (the one ConfigError); the weights' hash keys the run.
"""
from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

from benchmark.config.loading import load_config
from benchmark.grid.build import build_grid
from benchmark.grid.fingerprint import weights_fingerprint
from core.encoders import EncoderConfig, ImageEncoderConfig, create_image_backbone
from core.errors import ConfigError
from core.options import from_mapping

MODEL = "test_efficientnet"


def saved_weights(path, in_chans: int = 3, seed: int = 0, features_only: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    kwargs = {"features_only": True} if features_only else {"num_classes": 0}
    state = timm.create_model(MODEL, pretrained=False, in_chans=in_chans, **kwargs).state_dict()
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


def assert_same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(state) <= set(got)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_file_loads_the_weights(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    state = saved_weights(path)
    torch.manual_seed(123)  # a different random init: only the file can make them equal
    model = create_image_backbone(ImageEncoderConfig(MODEL, pretrained_file=str(path)), in_chans=3)
    assert_same(model, state)


def test_pretrained_file_features_only(tmp_path):
    path = tmp_path / "f.pth"
    state = saved_weights(path, features_only=True)
    torch.manual_seed(5)
    model = create_image_backbone(ImageEncoderConfig(MODEL, pretrained_file=str(path)), in_chans=3,
                                  features_only=True, out_indices=(1, 2))
    got = model.state_dict()
    shared = [k for k in state if k in got]
    assert shared and all(torch.equal(got[k], state[k]) for k in shared)


def test_pretrained_path_is_the_deprecated_alias(tmp_path):
    path = tmp_path / "w.pth"
    state = saved_weights(path)
    cfg = ImageEncoderConfig(MODEL, str(path))  # positional, as before: pretrained_path
    assert cfg.pretrained_file == cfg.pretrained_path == str(path) and cfg.uses_pretrained
    assert_same(create_image_backbone(cfg, in_chans=3), state)
    with pytest.raises(ConfigError, match="deprecated name"):
        ImageEncoderConfig(MODEL, pretrained_path="a.pth", pretrained_file="b.pth")


def test_pretrained_file_validation(tmp_path):
    with pytest.raises(ConfigError, match="pretrained_file: file .* does not exist"):
        from_mapping(ImageEncoderConfig, {"model": MODEL, "pretrained_file": str(tmp_path / "no.pth")},
                     "encoders.image")
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(2)}, other)
    with pytest.raises(ConfigError, match="no tensor of"):
        create_image_backbone(ImageEncoderConfig(MODEL, pretrained_file=str(other)), in_chans=3)
    wrong = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), wrong)
    with pytest.raises(ConfigError, match="does not fit timm model|no tensor of"):
        create_image_backbone(ImageEncoderConfig(MODEL, pretrained_file=str(wrong)), in_chans=3)


def test_pretrained_by_name_offline_without_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    cfg = from_mapping(ImageEncoderConfig, {"model": MODEL, "pretrained": True}, "encoders.image")
    with pytest.raises(ConfigError) as err:
        create_image_backbone(cfg, in_chans=3)
    message = str(err.value)
    assert f"'{MODEL}'" in message and str(cache) in message and "pretrained_file" in message
    # the run identity names the tag; without a cached copy it says so
    assert weights_fingerprint(EncoderConfig(cfg)) == f"{MODEL}.r160_in1k:uncached"


def test_pretrained_by_name_needs_a_timm_tag():
    with pytest.raises(ConfigError, match="no pretrained configuration"):
        from_mapping(ImageEncoderConfig, {"model": "test_efficientnet.no_such_tag", "pretrained": True},
                     "encoders.image")


def test_weights_hash_is_in_the_run_key(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    saved_weights(a, seed=0)
    saved_weights(b, seed=1)

    def key(path) -> str:
        cfg = load_config(None, {"methods": ["late_fusion"], "seeds": [0], "missing": {"rates": [0.0]},
                                 "encoders": {"image": {"pretrained_file": str(path)}}})
        return build_grid(cfg, with_oracle=False)[0].key()

    assert key(a) != key(b)
    first = key(a)
    a.write_bytes(b.read_bytes())  # same path, other weights: another run
    assert key(a) != first
    assert weights_fingerprint(EncoderConfig(ImageEncoderConfig(MODEL, pretrained_file=str(a)))) == \
        weights_fingerprint(EncoderConfig(ImageEncoderConfig(MODEL, pretrained_file=str(b))))


@pytest.mark.parametrize("preset, model, batch", [("resnet18_224", "resnet18", 32),
                                                  ("cfcml_derm7pt_swin", "swin_tiny_patch4_window7_224", 36)])
def test_presets_use_pretrained_encoders(preset, model, batch):
    path = Path(__file__).resolve().parents[1] / "configs" / "presets" / f"{preset}.yaml"
    cfg = load_config(path)
    assert cfg.encoders.image.model == model and cfg.encoders.image.pretrained and cfg.training.batch_size == batch
    assert cfg.training_for("cfcml").lr == 1e-4 and cfg.training.max_epochs == 50
