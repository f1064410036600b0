"""Late (decision-level) fusion: one head per modality, probabilities averaged over present ones.

Each unimodal branch is trained with its own loss on the samples that have its modality, so a
missing modality simply drops out of the average — the natural robust baseline.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.data import Batch
from methods import register_method
from methods.base import FusionMethod, Stage


@register_method("late_fusion")
class LateFusion(FusionMethod):
    display_name = "Late fusion"

    def __init__(self, info, encoders, **options) -> None:
        super().__init__(info, encoders, **options)
        self.image_encoder = self.build_image_encoder()
        self.tabular_encoder = self.build_tabular_encoder()
        self.image_head = nn.Linear(self.image_encoder.out_dim, info.num_classes)
        self.tabular_head = nn.Linear(self.tabular_encoder.out_dim, info.num_classes)

    def branch_logits(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.image_head(self.image_encoder(batch.images, batch.view_present))
        tabular = self.tabular_head(self.tabular_encoder(batch.tabular, batch.tabular_present))
        return image, tabular

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        image, tabular = self.branch_logits(batch)
        loss_img = self.classification_loss(image, batch.labels, batch.image_present)
        loss_tab = self.classification_loss(tabular, batch.labels, batch.tabular_present)
        return {"loss": loss_img + loss_tab, "loss_image": loss_img, "loss_tabular": loss_tab}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        image, tabular = self.branch_logits(batch)
        weights = batch.present.to(image.dtype)
        probs = (self.probabilities(image) * weights[:, :1] + self.probabilities(tabular) * weights[:, 1:])
        return probs / weights.sum(1, keepdim=True).clamp(min=1.0)
