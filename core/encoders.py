"""Shared encoders: every method builds its image and tabular encoders here, from one config.

Why one place: a fusion benchmark compares fusion, so the backbone family, its initialisation and
its width must be identical for every method.  Image encoders come from timm only
(``num_classes=0`` for pooled embeddings, ``features_only=True`` for stage features).

Pretrained weights go through timm's own pretrained path, never a hand-written loader:
``pretrained: true`` loads the model's default timm pretrained tag by name (a HuggingFace hub
download when online, the local HF cache when offline); ``pretrained_file: PATH`` loads a local
file through the same path (``pretrained_cfg_overlay=dict(file=PATH)``), so filtering of the
classifier and adaptation of the input conv to ``in_chans`` are timm's in both cases.
``pretrained_path`` is the deprecated name of ``pretrained_file`` (the two are folded into one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import timm.models
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from torch import nn

from core.errors import ConfigError


@dataclass(frozen=True)
class ImageEncoderConfig:
    model: str = "test_efficientnet"     # any timm model name
    pretrained_path: str | None = None   # deprecated alias of pretrained_file (folded into it)
    drop_rate: float = 0.0
    embedding_dim: int = 128             # width of the projection used for precomputed 1-D embeddings
    pretrained: bool = False             # timm's default pretrained tag of `model`, by name (HF hub/cache)
    pretrained_file: str | None = None   # local weights (.pth/.bin/.safetensors) loaded by timm; implies pretrained

    def __post_init__(self) -> None:
        if self.pretrained_path and self.pretrained_file and self.pretrained_path != self.pretrained_file:
            raise ConfigError(f"encoders.image: pretrained_path ({self.pretrained_path}) is the deprecated name "
                              f"of pretrained_file ({self.pretrained_file}); give one of them")
        path = self.pretrained_file or self.pretrained_path or None
        object.__setattr__(self, "pretrained_file", path)
        object.__setattr__(self, "pretrained_path", path)  # same value: code reading the old name still works

    @property
    def uses_pretrained(self) -> bool:
        """True when the backbone starts from pretrained weights (by name or from a file)."""
        return bool(self.pretrained or self.pretrained_file)

    def validate(self, where: str) -> None:
        if not timm.is_model(self.model):
            raise ConfigError(f"{where}.model: unknown timm model '{self.model}'")
        if self.pretrained_file and not Path(self.pretrained_file).is_file():
            raise ConfigError(f"{where}.pretrained_file: file {self.pretrained_file} does not exist")
        if self.pretrained and not self.pretrained_file and pretrained_tag(self.model) is None:
            raise ConfigError(f"{where}.pretrained: timm has no pretrained configuration for '{self.model}'")


@dataclass(frozen=True)
class TabularEncoderConfig:
    hidden: tuple[int, ...] = (64,)
    dim: int = 64
    dropout: float = 0.1


@dataclass(frozen=True)
class EncoderConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    tabular: TabularEncoderConfig = field(default_factory=TabularEncoderConfig)


def timm_pretrained_cfg(model: str) -> timm.models.PretrainedCfg | None:
    """timm's pretrained configuration of ``model`` (its default tag unless named), None if none."""
    try:
        return timm.models.get_pretrained_cfg(model, allow_unregistered=True)
    except RuntimeError:  # an invalid tag
        return None


def pretrained_tag(model: str) -> str | None:
    """The timm pretrained tag ``arch.tag`` that ``pretrained: true`` loads (None: timm has none)."""
    cfg = timm_pretrained_cfg(model)
    if cfg is None:
        return None
    return f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)


def hf_cache_dir() -> str:
    """Where the HuggingFace hub caches downloads: ``HF_HUB_CACHE``, default ``$HF_HOME/hub``
    (``~/.cache/huggingface/hub``), as huggingface_hub resolved it at import."""
    return str(hf_constants.HF_HUB_CACHE)


def cached_pretrained_file(model: str) -> str | None:
    """The local HF-cache file ``pretrained: true`` would load for ``model``, None if not cached."""
    cfg = timm_pretrained_cfg(model)
    if cfg is None or not cfg.hf_hub_id:
        return None
    names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
    for name in names:
        found = try_to_load_from_cache(cfg.hf_hub_id, name, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return found
    return None


def checkpoint_keys(path: str) -> set[str]:
    """Tensor names of a weights file, read as timm reads it (a nested ``state_dict`` included)."""
    return set(timm.models.load_state_dict(path, weights_only=True))


def create_pretrained(cfg: ImageEncoderConfig, kwargs: dict) -> nn.Module:
    """``timm.create_model(..., pretrained=True)`` from a file or by name, with one clear error."""
    if cfg.pretrained_file:
        try:
            model = timm.create_model(cfg.model, pretrained=True,
                                      pretrained_cfg_overlay={"file": cfg.pretrained_file}, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(f"encoders.image.pretrained_file: {cfg.pretrained_file} does not fit timm model "
                              f"'{cfg.model}': {exc}") from None
        if not checkpoint_keys(cfg.pretrained_file) & set(model.state_dict()):
            raise ConfigError(f"encoders.image.pretrained_file: no tensor of {cfg.pretrained_file} matches "
                              f"timm model '{cfg.model}'")
        return model
    try:
        return timm.create_model(cfg.model, pretrained=True, **kwargs)
    except OSError as exc:  # no network and no cached copy (LocalEntryNotFoundError, URLError, ...)
        raise ConfigError(
            f"encoders.image.pretrained: cannot load the pretrained weights of timm model '{cfg.model}' "
            f"(tag {pretrained_tag(cfg.model)}): not in the HuggingFace cache at {hf_cache_dir()} and the hub "
            f"is unreachable ({type(exc).__name__}). Download them once online (or set HF_HOME to a cache "
            f"that has them), or set encoders.image.pretrained_file: PATH to a local weights file") from None


def create_image_backbone(cfg: ImageEncoderConfig, in_chans: int, features_only: bool = False,
                          out_indices: tuple[int, ...] | None = None) -> nn.Module:
    """The one entry point to timm for image encoders."""
    kwargs: dict = {"in_chans": in_chans, "drop_rate": cfg.drop_rate}
    if features_only:
        kwargs.pop("drop_rate")
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = out_indices
    else:
        kwargs["num_classes"] = 0
    if cfg.uses_pretrained:
        return create_pretrained(cfg, kwargs)
    return timm.create_model(cfg.model, pretrained=False, **kwargs)


def encode_present(module: nn.Module, x: torch.Tensor, present: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Run ``module`` on the rows where ``present`` is True only; absent rows are exact zeros.

    This keeps placeholder inputs out of BatchNorm statistics and makes peeking impossible.  A
    training batch with a single present row (possible at high missing rates) cannot give
    BatchNorm batch statistics, so that one call uses the running statistics instead.
    """
    out = x.new_zeros((x.shape[0], out_dim))
    rows = torch.nonzero(present, as_tuple=False).flatten()
    if rows.numel() == 1 and module.training:
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.eval()
        try:
            out = out.index_copy(0, rows, module(x.index_select(0, rows)).to(out.dtype))
        finally:
            for m in norms:
                m.train()
        return out
    if rows.numel():
        out = out.index_copy(0, rows, module(x.index_select(0, rows)).to(out.dtype))
    return out


class EmbeddingProjection(nn.Module):
    """Encoder for precomputed 1-D image embeddings (e.g. CT-Foundation vectors): no timm model
    can take them, so they skip the backbone and get one Linear+ReLU projection, for every method."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())
        self.num_features = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class ImageEncoder(nn.Module):
    """A timm backbone shared by all views; per-view embeddings are mean-pooled over present views."""

    def __init__(self, cfg: ImageEncoderConfig, in_chans: int, views: tuple[str, ...],
                 image_shape: tuple[int, ...] = (0, 0)) -> None:
        super().__init__()
        self.views = views
        if len(image_shape) == 0:  # 1-D embeddings: (B, in_chans) per view
            self.backbone = EmbeddingProjection(in_chans, cfg.embedding_dim)
        else:
            self.backbone = create_image_backbone(cfg, in_chans)
        self.out_dim = int(self.backbone.num_features)

    def encode_views(self, images: dict[str, torch.Tensor], view_present: torch.Tensor) -> torch.Tensor:
        """(B, V, D) per-view embeddings, zeros for absent views; one backbone pass for all views."""
        stacked = torch.stack([images[v] for v in self.views], dim=1)  # (B, V, C, H, W)
        b, v = stacked.shape[:2]
        flat = encode_present(self.backbone, stacked.flatten(0, 1), view_present.flatten(), self.out_dim)
        return flat.view(b, v, self.out_dim)

    def forward(self, images: dict[str, torch.Tensor], view_present: torch.Tensor) -> torch.Tensor:
        per_view = self.encode_views(images, view_present)
        weights = view_present.to(per_view.dtype).unsqueeze(-1)
        return (per_view * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TabularEncoder(nn.Module):
    """MLP over the encoded tabular vector (z-scored numerics, NaN indicators, one-hots)."""

    def __init__(self, cfg: TabularEncoderConfig, in_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in cfg.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = hidden
        layers += [nn.Linear(width, cfg.dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = cfg.dim

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        if present is None:
            return self.net(x)
        return encode_present(self.net, x, present, self.out_dim)
