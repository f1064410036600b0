"""Shared encoders: every method builds its image and tabular encoders here, from one config.

Why one place: a fusion benchmark compares fusion, so the backbone family, its initialisation and
its width must be identical for every method.  Image encoders come from timm only
(``num_classes=0`` for pooled embeddings, ``features_only=True`` for stage features); pretrained
weights are read from a local file given in config, never downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from core.errors import ConfigError


@dataclass(frozen=True)
class ImageEncoderConfig:
    model: str = "test_efficientnet"     # any timm model name
    pretrained_path: str | None = None   # local state_dict file (.pth/.safetensors); no downloads
    drop_rate: float = 0.0
    embedding_dim: int = 128             # width of the projection used for precomputed 1-D embeddings

    def validate(self, where: str) -> None:
        if not timm.is_model(self.model):
            raise ConfigError(f"{where}.model: unknown timm model '{self.model}'")
        if self.pretrained_path and not Path(self.pretrained_path).is_file():
            raise ConfigError(f"{where}.pretrained_path: file {self.pretrained_path} does not exist")


@dataclass(frozen=True)
class TabularEncoderConfig:
    hidden: tuple[int, ...] = (64,)
    dim: int = 64
    dropout: float = 0.1


@dataclass(frozen=True)
class EncoderConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    tabular: TabularEncoderConfig = field(default_factory=TabularEncoderConfig)


def _load_local_weights(model: nn.Module, path: str) -> None:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = len(state) - len(unexpected)
    if loaded == 0:
        raise ConfigError(f"encoders.image.pretrained_path: no tensor of {path} matches the model")


def create_image_backbone(cfg: ImageEncoderConfig, in_chans: int, features_only: bool = False,
                          out_indices: tuple[int, ...] | None = None) -> nn.Module:
    """The one entry point to timm for image encoders."""
    kwargs: dict = {"pretrained": False, "in_chans": in_chans, "drop_rate": cfg.drop_rate}
    if features_only:
        kwargs.pop("drop_rate")
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = out_indices
    else:
        kwargs["num_classes"] = 0
    model = timm.create_model(cfg.model, **kwargs)
    if cfg.pretrained_path:
        _load_local_weights(model, cfg.pretrained_path)
    return model


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
