"""DAFT: the Dynamic Affine Feature map Transform (Pölsterl, Wolf, Wachinger, MICCAI 2021).

Paper: "Combining 3D Image and Tabular Data via the Dynamic Affine Feature Map Transform",
arXiv 2107.05990.  Authors' code: github.com/ai-med/DAFT (HEAD b36974b), ``DAFTBlock`` in
``daft/networks/vol_blocks.py``.  Spec: ``docs/specs/daft.md``.

Why: the tabular record conditions the image network instead of being concatenated at the end.
Inside a late block a small MLP reads [GAP(F); t] (the pooled feature map and the tabular vector)
and outputs a per-channel scale alpha and shift beta; the block continues with alpha * F + beta.

Exact (follows the released code)
  * generator ``Linear(C + T -> b, no bias) -> ReLU -> Linear(b -> 2C, no bias)`` on the feature
    map *being transformed*, squeezed by global average pooling; scale activation linear / tanh /
    sigmoid; ``scale`` and ``shift`` switches; b = int((C + T) / bottleneck_factor), factor 7;
  * ``location: last_block`` on a timm ResNet: between ``bn1`` and ``act1`` of the last residual
    block, i.e. upstream's location 3 (the published run's setting); a single Linear head.

Adaptations (options of :class:`DAFTOptions`)
  * ``location``: ``last_block`` hooks the output of ``bn1`` of the last block of timm's last feature
    stage; for EfficientNets ``bn1`` includes its activation (after BN + SiLU).  ``final_map``
    transforms the backbone's final feature map and then runs timm's own pooling head: works for
    every timm CNN and for 1-D embeddings.  The backbone is the shared one every method builds.
  * ``scale_form: residual`` (default) uses alpha = 1 + act'(g) (act' = g, tanh g, 2 sigmoid(g) - 1),
    so a zero generator output is the identity transform; ``direct`` is upstream (alpha = act(g)).
  * ``tabular_input: encoder`` feeds the shared tabular encoder's output to the generator (fair
    comparison); ``raw`` feeds the encoded tabular vector itself (upstream).
  * absent tabular record (``absent_tabular``): ``identity`` (alpha = 1, beta = 0, the plain image
    network) or ``learned`` (a zero-initialised vector stands in for the generator's tabular input).
  * absent image (``absent_image``): ``tabular_head`` (a Linear head on the tabular encoder; also
    trained on rows with both modalities with weight ``tabular_aux_weight``) or ``learned_map``
    (``final_map`` only: a learned per-channel vector stands in for the pooled map and the same
    generator and head run on it).  Rows with neither modality get learned prior logits.
  * encoders run only on present (sample, view) rows through ``core.encoders.encode_present``;
    each row carries its sample's conditioning through the row selection (packed with the pixels);
    multi-view datasets average the pooled embeddings over present views (as ``ImageEncoder``).
  * optimiser and budget: the harness's shared AdamW (upstream: AdamW lr 0.013, wd 0, 30 epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, encode_present
from core.errors import ConfigError
from methods import register_method
from methods.base import FusionMethod, Stage, UnimodalFallback


@dataclass(frozen=True)
class DAFTOptions:
    """Options of ``daft``; (code) = the released code, (adapt) = our change, see module docstring."""

    location: Literal["last_block", "final_map"] = "last_block"   # (code: location 3) / (adapt)
    bottleneck_factor: float = 7.0           # (code)
    bottleneck_dim: int | None = None        # overrides the factor when set
    activation: Literal["linear", "tanh", "sigmoid"] = "linear"   # (code) scale activation
    scale_form: Literal["residual", "direct"] = "residual"        # (adapt) direct = code
    scale: bool = True                       # (code)
    shift: bool = True                       # (code)
    tabular_input: Literal["encoder", "raw"] = "encoder"           # (adapt) raw = code
    absent_tabular: Literal["identity", "learned"] = "identity"    # (adapt)
    absent_image: Literal["tabular_head", "learned_map"] = "tabular_head"  # (adapt)
    tabular_aux_weight: float = 1.0          # (adapt) tabular head CE on rows with both modalities

    def validate(self, where: str) -> None:
        if not (self.scale or self.shift):
            raise ConfigError(f"{where}: at least one of scale and shift must be true")
        if self.bottleneck_factor <= 0:
            raise ConfigError(f"{where}.bottleneck_factor: must be > 0, got {self.bottleneck_factor}")
        if self.bottleneck_dim is not None and self.bottleneck_dim < 1:
            raise ConfigError(f"{where}.bottleneck_dim: must be >= 1 or null, got {self.bottleneck_dim}")
        if self.tabular_aux_weight < 0:
            raise ConfigError(f"{where}.tabular_aux_weight: must be >= 0, got {self.tabular_aux_weight}")
        if self.absent_image == "learned_map" and self.location != "final_map":
            raise ConfigError(f"{where}.absent_image: learned_map stands in for the pooled final map and "
                              "needs location: final_map")


class DAFTTransform(nn.Module):
    """F' = alpha * F + beta per (sample, channel), (alpha, beta) = g([GAP(F); t]) (code)."""

    def __init__(self, channels: int, cond_dim: int, bottleneck: int, activation: str = "linear",
                 scale_form: str = "residual", scale: bool = True, shift: bool = True) -> None:
        super().__init__()
        self.channels, self.activation, self.scale_form = channels, activation, scale_form
        self.use_scale, self.use_shift = scale, shift
        outputs = channels * (int(scale) + int(shift))
        self.generator = nn.Sequential(nn.Linear(channels + cond_dim, bottleneck, bias=False), nn.ReLU(),
                                       nn.Linear(bottleneck, outputs, bias=False))

    def affine_parameters(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, beta), each (N, C), from the generator's raw output (N, C * n_used)."""
        parts = list(raw.split(self.channels, dim=1))
        ones = raw.new_ones(raw.shape[0], self.channels)
        alpha, beta = ones, torch.zeros_like(ones)
        if self.use_scale:
            g = parts.pop(0)
            if self.scale_form == "residual":   # zero output -> alpha = 1
                delta = {"linear": g, "tanh": torch.tanh(g), "sigmoid": 2 * torch.sigmoid(g) - 1}
                alpha = 1 + delta[self.activation]
            else:                               # upstream: alpha = act(g)
                alpha = {"linear": g, "tanh": torch.tanh(g), "sigmoid": torch.sigmoid(g)}[self.activation]
        if self.use_shift:
            beta = parts.pop(0)
        return alpha, beta

    def forward(self, fmap: torch.Tensor, cond: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        if fmap.dim() != 4 or fmap.shape[1] != self.channels:
            raise ConfigError(f"method 'daft': expected a (N, {self.channels}, H, W) feature map to transform, "
                              f"got {tuple(fmap.shape)}")
        squeeze = fmap.mean(dim=(2, 3))
        alpha, beta = self.affine_parameters(self.generator(torch.cat([squeeze, cond.to(fmap.dtype)], dim=1)))
        out = fmap * alpha[:, :, None, None] + beta[:, :, None, None]
        if active is not None:                  # identity where the conditioning is switched off
            out = torch.where(active.view(-1, 1, 1, 1), out, fmap)
        return out


def last_block_norm(backbone: nn.Module, what: str) -> nn.Module:
    """``bn1`` of the last block of timm's last feature stage (upstream location 3 for ResNets)."""
    info = getattr(backbone, "feature_info", None)
    try:
        stage = backbone.get_submodule(info[-1]["module"])
    except (TypeError, KeyError, IndexError, AttributeError):
        stage = None
    children = list(stage.children()) if isinstance(stage, nn.Sequential) else [stage]
    block = children[-1] if children else None
    norm = getattr(block, "bn1", None)
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        raise ConfigError(f"method 'daft' options.location=last_block: the image encoder ({what}) has no block "
                          "with a 'bn1' BatchNorm at the end of its last stage; set options.location: final_map")
    return norm


class DAFTImageBranch(nn.Module):
    """Backbone + transform on packed rows ``[pixels | conditioning | active]``.

    The packing lets ``encode_present`` select rows (with its single-row BatchNorm fallback) while
    every selected row keeps its own sample's tabular conditioning.
    """

    def __init__(self, backbone: nn.Module, transform: DAFTTransform, location: str,
                 hook_target: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone, self.transform, self.location = backbone, transform, location
        self.image_shape: tuple[int, ...] = ()
        self._context: tuple[torch.Tensor, torch.Tensor] | None = None
        if hook_target is not None:
            hook_target.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._context is None:
            raise RuntimeError("DAFT hook called outside DAFTImageBranch.forward")
        return self.transform(output, *self._context)

    def final_map(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.backbone, "forward_features"):
            return self.backbone.forward_features(x)
        return self.backbone(x)[:, :, None, None]          # 1-D embeddings: a 1x1 "map"

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        if hasattr(self.backbone, "forward_head"):
            return self.backbone.forward_head(fmap, pre_logits=True)
        return fmap.mean(dim=(2, 3))

    @staticmethod
    def pack(images: torch.Tensor, cond: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.flatten(1), cond.to(images.dtype), active.to(images.dtype).unsqueeze(1)], dim=1)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        n_pixels = math.prod(self.image_shape)
        x = packed[:, :n_pixels].reshape(-1, *self.image_shape)
        cond, active = packed[:, n_pixels:-1], packed[:, -1] > 0.5
        if self.location == "final_map":
            return self.pool(self.transform(self.final_map(x), cond, active))
        self._context = (cond, active)
        try:
            return self.backbone(x)
        finally:
            self._context = None


@register_method("daft")
class DAFT(FusionMethod):
    """The tabular record scales and shifts the channels of a late image feature map."""

    display_name = "DAFT"
    Options = DAFTOptions
    search_space = {
        "options.bottleneck_factor": {"type": "float", "low": 2.0, "high": 16.0, "log": True},
        "options.activation": {"type": "categorical", "choices": ["linear", "tanh", "sigmoid"]},
        "options.location": {"type": "categorical", "choices": ["last_block", "final_map"]},
        "options.tabular_aux_weight": {"type": "float", "low": 0.1, "high": 2.0, "log": True},
    }

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, **options: Any) -> None:
        super().__init__(info, encoders, **options)
        o = self.options
        self.views = tuple(info.views)
        backbone = self.build_image_encoder().backbone     # the shared timm model of every method
        self.tabular_encoder = self.build_tabular_encoder()
        cond_dim = self.tabular_encoder.out_dim if o.tabular_input == "encoder" else info.tabular_dim
        if o.location == "last_block":
            what = f"timm '{encoders.image.model}'" if info.image_shape else "precomputed 1-D embeddings"
            target = last_block_norm(backbone, what)
            channels = int(target.num_features)
        else:
            target, channels = None, int(backbone.num_features)
        bottleneck = o.bottleneck_dim or max(1, int((channels + cond_dim) / o.bottleneck_factor))
        transform = DAFTTransform(channels, cond_dim, bottleneck, o.activation, o.scale_form, o.scale, o.shift)
        self.image_branch = DAFTImageBranch(backbone, transform, o.location, target)
        self.image_dim = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        self.head = nn.Linear(self.image_dim, info.num_classes)      # (code) one Linear
        if o.absent_tabular == "learned":
            self.absent_tabular_vector = nn.Parameter(torch.zeros(cond_dim))
        if o.absent_image == "tabular_head":
            self.tabular_head = nn.Linear(self.tabular_encoder.out_dim, info.num_classes)
        else:
            self.absent_image_map = nn.Parameter(torch.zeros(channels))
        self.fallback = UnimodalFallback(info.num_classes)

    # -- forward pieces ---------------------------------------------------------------------------
    def conditioning(self, batch: Batch, tab_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) generator input and (B,) bool: where the transform is active."""
        has_tab = batch.tabular_present
        if self.options.tabular_input == "encoder":
            cond = tab_embedding
        else:                                   # never read an absent record's content
            cond = torch.where(has_tab.unsqueeze(1), batch.tabular, torch.zeros_like(batch.tabular))
        if self.options.absent_tabular == "learned":
            cond = torch.where(has_tab.unsqueeze(1), cond, self.absent_tabular_vector.to(cond.dtype))
            return cond, torch.ones_like(has_tab)
        return cond, has_tab

    def image_features(self, batch: Batch, cond: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled, transformed embeddings averaged over present views; zeros without an image."""
        stacked = torch.stack([batch.images[v] for v in self.views], dim=1)     # (B, V, ...)
        b, v = stacked.shape[:2]
        flat = stacked.flatten(0, 1)
        self.image_branch.image_shape = tuple(flat.shape[1:])
        packed = DAFTImageBranch.pack(flat, cond.repeat_interleave(v, dim=0), active.repeat_interleave(v, dim=0))
        per_view = encode_present(self.image_branch, packed, batch.view_present.flatten(), self.image_dim)
        weights = batch.view_present.to(per_view.dtype).view(b, v, 1)
        return (per_view.view(b, v, -1) * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward_parts(self, batch: Batch) -> dict[str, torch.Tensor]:
        tab = self.tabular_encoder(batch.tabular, batch.tabular_present)
        cond, active = self.conditioning(batch, tab)
        main = self.head(self.image_features(batch, cond, active))
        if self.options.absent_image == "tabular_head":
            alternative = self.tabular_head(tab)
        else:                                   # learned stand-in for the pooled map, same generator
            fmap = self.absent_image_map.view(1, -1, 1, 1).expand(len(batch), -1, 1, 1).to(main.dtype)
            branch = self.image_branch
            alternative = self.head(branch.pool(branch.transform(fmap, cond, active)))
        has_img, has_tab = batch.image_present, batch.tabular_present
        fallback = self.fallback(len(batch))
        logits = torch.where(has_img.unsqueeze(1), main,
                             torch.where(has_tab.unsqueeze(1), alternative, fallback))
        return {"logits": logits, "main": main, "alternative": alternative}

    # -- the contract -----------------------------------------------------------------------------
    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        parts = self.forward_parts(batch)
        task = self.classification_loss(parts["logits"], batch.labels)
        out = {"loss_task": task}
        loss = task
        if self.options.absent_image == "tabular_head" and self.options.tabular_aux_weight > 0:
            both = batch.image_present & batch.tabular_present
            aux = self.classification_loss(parts["alternative"], batch.labels, both)
            loss = loss + self.options.tabular_aux_weight * aux
            out["loss_tabular_aux"] = aux
        out["loss"] = loss
        return out

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.forward_parts(batch)["logits"])

