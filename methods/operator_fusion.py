"""Operator fusion baselines: element-wise max (``max_fusion``) or product (``mul_fusion``).

Why: the cheapest fusions that are not a concatenation.  Each modality's embedding is projected
by its own Linear to a common width d; the projections are combined by one parameter-free
element-wise operator; the fusion MLP of ``early_fusion`` classifies.  They show how much of a
published method's gain a fixed interaction (max picks, per dimension, the stronger modality;
the product lets one modality gate the other) already gives.

Missing modality: the absent embedding is the operator's identity element (-inf for max, 1 for
the product), so the fused vector is the operator over the *present* modalities only — one
present modality passes through unchanged.  Encoders run on present rows only, so no absent
content reaches the operator.  Rows with neither modality get learned prior logits.
``presence_flags`` (default true, as ``early_fusion``) appends the (image, tabular) presence bits
to the fused vector, because the operator alone cannot say which modalities it combined.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig
from core.errors import ConfigError
from methods import register_method
from methods.base import FusionMethod, Stage, UnimodalFallback


@dataclass(frozen=True)
class OperatorFusionOptions:
    proj_dim: int = 64          # d, common width of the projected embeddings
    hidden: int = 64            # fusion MLP width (as early_fusion)
    dropout: float = 0.1
    presence_flags: bool = True

    def validate(self, where: str) -> None:
        if self.proj_dim < 1 or self.hidden < 1:
            raise ConfigError(f"{where}: proj_dim and hidden must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")


def fuse_max(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Element-wise max over present modalities: ``z`` (B, M, d), ``present`` (B, M) -> (B, d).

    Rows without any present modality give zeros.
    """
    masked = torch.where(present.unsqueeze(-1), z, torch.full_like(z, float("-inf")))
    fused = masked.max(dim=1).values
    return torch.where(present.any(1, keepdim=True), fused, torch.zeros_like(fused))


def fuse_product(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Element-wise product over present modalities (an absent one counts as 1) -> (B, d).

    Rows without any present modality give zeros (not the empty product 1).
    """
    fused = torch.where(present.unsqueeze(-1), z, torch.ones_like(z)).prod(dim=1)
    return torch.where(present.any(1, keepdim=True), fused, torch.zeros_like(fused))


class OperatorFusion(FusionMethod):
    """Shared body of the operator baselines; subclasses set ``operator``."""

    Options = OperatorFusionOptions
    operator: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    search_space = {
        "options.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "options.proj_dim": {"type": "categorical", "choices": [32, 64, 128]},
    }

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, **options: Any) -> None:
        super().__init__(info, encoders, **options)
        o = self.options
        self.image_encoder = self.build_image_encoder()
        self.tabular_encoder = self.build_tabular_encoder()
        self.image_proj = nn.Linear(self.image_encoder.out_dim, o.proj_dim)
        self.tabular_proj = nn.Linear(self.tabular_encoder.out_dim, o.proj_dim)
        width = o.proj_dim + (2 if o.presence_flags else 0)
        self.head = nn.Sequential(nn.Linear(width, o.hidden), nn.ReLU(), nn.Dropout(o.dropout),
                                  nn.Linear(o.hidden, info.num_classes))
        self.fallback = UnimodalFallback(info.num_classes)

    def fused(self, batch: Batch) -> torch.Tensor:
        """(B, d) operator output over the present modalities' projections."""
        image = self.image_proj(self.image_encoder(batch.images, batch.view_present))
        tabular = self.tabular_proj(self.tabular_encoder(batch.tabular, batch.tabular_present))
        return type(self).operator(torch.stack([image, tabular], dim=1), batch.present)

    def logits(self, batch: Batch) -> torch.Tensor:
        fused = self.fused(batch)
        if self.options.presence_flags:
            fused = torch.cat([fused, batch.present.to(fused.dtype)], dim=1)
        return torch.where(batch.present.any(1, keepdim=True), self.head(fused), self.fallback(len(batch)))

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        return {"loss": self.classification_loss(self.logits(batch), batch.labels)}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.logits(batch))


@register_method("max_fusion")
class MaxFusion(OperatorFusion):
    """Element-wise max of the projected embeddings."""

    display_name = "Max fusion"
    operator = staticmethod(fuse_max)


@register_method("mul_fusion")
class ProductFusion(OperatorFusion):
    """Element-wise product of the projected embeddings."""

    display_name = "Product fusion"
    operator = staticmethod(fuse_product)
