"""Image-only baseline: the shared image encoder and a linear head.

Samples without an image get learned fallback logits (their label prior): a unimodal model has
nothing else to say about them.
"""
from __future__ import annotations

import torch
from torch import nn

from core.batch import Batch
from methods import register_method
from methods.base import FusionMethod, Stage, UnimodalFallback


@register_method("image_only")
class ImageOnly(FusionMethod):
    display_name = "Image only"

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.image_encoder = self.build_image_encoder()
        self.head = nn.Linear(self.image_encoder.out_dim, info.num_classes)
        self.fallback = UnimodalFallback(info.num_classes)

    def logits(self, batch: Batch) -> torch.Tensor:
        has = batch.image_present
        features = self.image_encoder(batch.images, batch.view_present)
        return torch.where(has.unsqueeze(1), self.head(features), self.fallback(len(batch)))

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        return {"loss": self.classification_loss(self.logits(batch), batch.labels)}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.logits(batch))
