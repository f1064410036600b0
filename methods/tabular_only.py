"""Tabular-only baseline: the shared tabular MLP encoder and a linear head.

Samples without a tabular record get learned fallback logits (their label prior).
"""
from __future__ import annotations

import torch
from torch import nn

from core.batch import Batch
from methods import register_method
from methods.base import FusionMethod, Stage, UnimodalFallback


@register_method("tabular_only")
class TabularOnly(FusionMethod):
    display_name = "Tabular only"

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.tabular_encoder = self.build_tabular_encoder()
        self.head = nn.Linear(self.tabular_encoder.out_dim, info.num_classes)
        self.fallback = UnimodalFallback(info.num_classes)

    def logits(self, batch: Batch) -> torch.Tensor:
        has = batch.tabular_present
        features = self.tabular_encoder(batch.tabular, has)
        return torch.where(has.unsqueeze(1), self.head(features), self.fallback(len(batch)))

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        return {"loss": self.classification_loss(self.logits(batch), batch.labels)}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.logits(batch))
