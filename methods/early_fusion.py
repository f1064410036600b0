"""Early (feature-level) fusion: concatenate the two embeddings, zero for an absent modality.

The classic concat baseline. Zero-filling is the standard convention; each encoder only runs on
rows where its modality is present, so the zeros are exact and carry no information.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.batch import Batch
from methods import register_method
from methods.base import FusionMethod, Stage


@dataclass(frozen=True)
class EarlyFusionOptions:
    hidden: int = 64        # width of the fusion MLP
    dropout: float = 0.1
    presence_flags: bool = True  # append the (image, tabular) presence bits to the concat


@register_method("early_fusion")
class EarlyFusion(FusionMethod):
    display_name = "Early fusion (concat)"
    Options = EarlyFusionOptions
    search_space = {"options.dropout": {"type": "float", "low": 0.0, "high": 0.5}}

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.image_encoder = self.build_image_encoder()
        self.tabular_encoder = self.build_tabular_encoder()
        width = self.image_encoder.out_dim + self.tabular_encoder.out_dim
        width += 2 if self.options.presence_flags else 0
        self.head = nn.Sequential(nn.Linear(width, self.options.hidden), nn.ReLU(),
                                  nn.Dropout(self.options.dropout),
                                  nn.Linear(self.options.hidden, info.num_classes))

    def logits(self, batch: Batch) -> torch.Tensor:
        image = self.image_encoder(batch.images, batch.view_present)
        tabular = self.tabular_encoder(batch.tabular, batch.tabular_present)
        parts = [image, tabular]
        if self.options.presence_flags:
            parts.append(batch.present.to(image.dtype))
        return self.head(torch.cat(parts, dim=1))

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        return {"loss": self.classification_loss(self.logits(batch), batch.labels)}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.logits(batch))
