"""ShaSpec: shared-specific feature modelling for missing modalities (Wang et al., CVPR 2023).

Paper: "Multi-modal Learning with Missing Modality via Shared-Specific Feature Modelling",
arXiv 2307.14126.  Authors' code: github.com/billhhh/ShaSpec (HEAD 081fe7a; ``DualNet_SS.py``,
``train_SS.py``, ``run.sh``).  Spec: ``docs/specs/shaspec.md``.

Why this method is robust to a missing modality: every modality gets a *shared* feature r_m (one
encoder for all modalities) and a *specific* feature s_m (its own encoder).  An alignment loss
pulls the shared features of a sample's modalities together, so a missing modality can be
represented by the shared features of the present ones; a domain classifier on s_m keeps the
specific features modality-specific.  A present modality is fused residually,
f_m = r_m + W [r_m; s_m]; the classifier reads [f_image; f_tabular].

Exact (follows the released code)
  * residual fusion with one layer W (no bias) shared by all modalities; optional L2 normalisation
    of its inputs (``normalize_fusion_inputs``, off as in the code);
  * L_dao = L1 (``nn.L1Loss``, mean) between shared features, L_dco = CE of Linear(d -> M) on the
    specific features with the modality index as target; total = task + 0.1 L_dao + 0.02 L_dco;
  * missing modality: the shared feature of the available modality (the code takes the first
    available one, the commented-out alternative the mean; identical with two modalities);
  * two phases: full-modality warm-up, then random modality dropout with upstream's distribution
    (number kept uniform in 1..M, then a uniform subset; per sample, as upstream's batch size 1).

Adaptations to image + tabular (ShaSpec was built for MRI sequences of one type; options of
:class:`ShaSpecOptions`)
  * the shared stems are the harness's ``ImageEncoder`` and ``TabularEncoder`` (run on present rows
    only); the "shared encoder" is a modality adapter Linear(stem -> d) followed by one MLP with the
    same weights for both modalities; the specific encoders are one MLP per modality on the stem
    (upstream: five separate 3-D ResNet-50s);
  * the segmentation decoder is replaced by an MLP head on [f_image; f_tabular];
  * L_dao on samples with both modalities, counted once (the code's cycle of pairs would count the
    one pair twice); L_dco on present (sample, modality) pairs (the code also uses zeroed inputs);
  * ``fill_projection`` (off; the code has none): a learned Linear on the filled shared feature;
  * schedule: ``warmup_fraction`` of the shared epoch budget as the warm-up stage, the rest with
    simulated dropout (``random_drop``); the dropout only changes the fusion path, the auxiliary
    losses use the features of what the batch really has;
  * optimiser: the harness's shared AdamW and budget (upstream: SGD 0.99 Nesterov, lr 1e-2, poly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig
from core.errors import ConfigError
from methods import register_method
from methods.base import FusionMethod, Stage, UnimodalFallback, budget_share

MODALITIES = ("image", "tabular")
DROPOUT_STAGE = "modality_dropout"


@dataclass(frozen=True)
class ShaSpecOptions:
    """Options of ``shaspec``; (code) = the released code, (adapt) = our change."""

    dim: int = 64                     # d, width of shared / specific / fused features (code: 256 maps)
    head_hidden: int = 64             # (adapt) classifier MLP width
    dropout: float = 0.1              # (adapt) classifier dropout
    alpha: float = 0.1                # (code) weight of the distribution alignment loss
    beta: float = 0.02                # (code) weight of the domain classification loss
    alignment: Literal["l1", "mse"] = "l1"   # (code) nn.L1Loss; MSE is commented out there
    normalize_fusion_inputs: bool = False     # (code) flag, off
    fill_projection: bool = False     # (adapt) Linear on the filled shared feature; the code has none
    random_drop: Literal["per_sample", "per_batch", "none"] = "per_sample"  # (code: batch size 1)
    warmup_fraction: float = 0.3      # (code: 80k of 260k iterations at full modality)

    def validate(self, where: str) -> None:
        if self.dim < 1 or self.head_hidden < 1:
            raise ConfigError(f"{where}: dim and head_hidden must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        for name in ("alpha", "beta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"{where}.warmup_fraction: must be in [0, 1], got {self.warmup_fraction}")


# ---------------------------------------------------------------------------------------------
# The defining computations, as functions (tests check them on constructed inputs)
# ---------------------------------------------------------------------------------------------
def alignment_loss(shared: torch.Tensor, present: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """L_dao: mean |r_a - r_b| (or squared) over the samples that have both modalities of a pair.

    ``shared`` (B, M, d), ``present`` (B, M).  Pairs: (0, 1) for M = 2, else the code's cycle
    (m, m+1 mod M); each pair's mean is over its own rows and all d dimensions; pairs are summed.
    """
    m = shared.shape[1]
    pairs = [(0, 1)] if m == 2 else [(i, (i + 1) % m) for i in range(m)]
    total = shared.sum() * 0.0
    for a, b in pairs:
        rows = present[:, a] & present[:, b]
        if rows.any():
            diff = shared[rows, a] - shared[rows, b]
            total = total + (diff.abs().mean() if kind == "l1" else diff.pow(2).mean())
    return total


def domain_loss(domain_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L_dco: CE of the domain classifier, target = modality index, over present (sample, m) pairs.

    ``domain_logits`` (B, M, M): the classifier's logits for each sample's specific feature s_m.
    """
    b, m, _ = domain_logits.shape
    targets = torch.arange(m, device=domain_logits.device).expand(b, m)
    if not present.any():
        return domain_logits.sum() * 0.0
    return F.cross_entropy(domain_logits[present], targets[present])


def fill_missing(shared: torch.Tensor, fused: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """f_m for absent m := mean of the present modalities' shared features; zeros if none present."""
    weights = present.to(shared.dtype).unsqueeze(-1)
    mean_shared = (shared * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
    return torch.where(present.unsqueeze(-1), fused, mean_shared.expand_as(fused))


def simulate_missing(present: torch.Tensor, mode: str) -> torch.Tensor:
    """Upstream's random modality dropout for M = 2: keep both 1/2, image only 1/4, tabular only 1/4.

    Drawn per sample or once per batch (``mode``); a sample never loses its last present modality.
    """
    if mode == "none":
        return present
    n = 1 if mode == "per_batch" else present.shape[0]
    u = torch.rand(n, device=present.device).expand(present.shape[0])
    keep = torch.stack([u < 0.75, (u < 0.5) | (u >= 0.75)], dim=1)   # [0.5,0.75): image only; >=0.75: tabular only
    thinned = present & keep
    return torch.where(thinned.any(1, keepdim=True), thinned, present)


@register_method("shaspec")
class ShaSpec(FusionMethod):
    """Shared + specific features, residual fusion, shared-feature fill for a missing modality."""

    display_name = "ShaSpec"
    Options = ShaSpecOptions
    search_space = {
        "options.alpha": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "options.beta": {"type": "float", "low": 0.002, "high": 0.2, "log": True},
        "options.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "options.warmup_fraction": {"type": "float", "low": 0.0, "high": 0.6},
    }

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, **options: Any) -> None:
        super().__init__(info, encoders, **options)
        o, d = self.options, self.options.dim
        self.image_encoder = self.build_image_encoder()
        self.tabular_encoder = self.build_tabular_encoder()
        widths = (self.image_encoder.out_dim, self.tabular_encoder.out_dim)
        self.adapters = nn.ModuleList(nn.Linear(w, d) for w in widths)
        self.shared_encoder = nn.Sequential(nn.ReLU(), nn.Linear(d, d))          # same weights for all m
        self.specific_encoders = nn.ModuleList(nn.Sequential(nn.Linear(w, d), nn.ReLU(), nn.Linear(d, d))
                                               for w in widths)
        self.fusion = nn.Linear(2 * d, d, bias=False)                            # (code) one layer, no bias
        self.domain_classifier = nn.Linear(d, len(MODALITIES))
        if o.fill_projection:
            self.fill_projections = nn.ModuleList(nn.Linear(d, d) for _ in MODALITIES)
        self.head = nn.Sequential(nn.Linear(len(MODALITIES) * d, o.head_hidden), nn.ReLU(),
                                  nn.Dropout(o.dropout), nn.Linear(o.head_hidden, info.num_classes))
        self.fallback = UnimodalFallback(info.num_classes)

    def stages(self, epochs: int) -> list[Stage]:
        if self.options.random_drop == "none":
            return [Stage("supervised", epochs)]
        warmup = min(epochs - 1, budget_share(self.options.warmup_fraction, epochs, minimum=0))
        stages = [Stage("warmup", warmup), Stage(DROPOUT_STAGE, epochs - warmup)]
        return [s for s in stages if s.epochs > 0]

    # -- forward pieces ---------------------------------------------------------------------------
    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Shared r (B, M, d) and specific s (B, M, d) features; zeros where the modality is absent."""
        stems = (self.image_encoder(batch.images, batch.view_present),
                 self.tabular_encoder(batch.tabular, batch.tabular_present))
        present = batch.present
        shared = torch.stack([self.shared_encoder(a(e)) for a, e in zip(self.adapters, stems)], dim=1)
        specific = torch.stack([p(e) for p, e in zip(self.specific_encoders, stems)], dim=1)
        mask = present.unsqueeze(-1).to(shared.dtype)     # an absent stem is zeros; keep r, s exact zeros
        return {"shared": shared * mask, "specific": specific * mask, "present": present}

    def fuse(self, shared: torch.Tensor, specific: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, M, d): residual fusion where present, shared-feature fill where absent."""
        if self.options.normalize_fusion_inputs:
            pair = torch.cat([F.normalize(shared, dim=-1), F.normalize(specific, dim=-1)], dim=-1)
        else:
            pair = torch.cat([shared, specific], dim=-1)
        fused = shared + self.fusion(pair)
        filled = fill_missing(shared, fused, present)
        if self.options.fill_projection:
            projected = torch.stack([proj(filled[:, m]) for m, proj in enumerate(self.fill_projections)], dim=1)
            filled = torch.where(present.unsqueeze(-1), filled, projected)
        return filled

    def forward_parts(self, batch: Batch, fusion_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``fusion_present`` (default: the batch's) says which modalities the fusion path may use."""
        feats = self.encode(batch)
        use = feats["present"] if fusion_present is None else fusion_present & feats["present"]
        fused = self.fuse(feats["shared"], feats["specific"], use)
        logits = self.head(fused.flatten(1))
        logits = torch.where(use.any(1, keepdim=True), logits, self.fallback(len(batch)))
        return {**feats, "fused": fused, "fusion_present": use, "logits": logits}

    # -- the contract -----------------------------------------------------------------------------
    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        o = self.options
        fusion_present = None
        if stage.name == DROPOUT_STAGE:
            fusion_present = simulate_missing(batch.present, o.random_drop)
        parts = self.forward_parts(batch, fusion_present)
        task = self.classification_loss(parts["logits"], batch.labels)
        dao = alignment_loss(parts["shared"], parts["present"], o.alignment)
        dco = domain_loss(self.domain_classifier(parts["specific"]), parts["present"])
        return {"loss": task + o.alpha * dao + o.beta * dco, "loss_task": task, "loss_dao": dao, "loss_dco": dco}

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.forward_parts(batch)["logits"])
