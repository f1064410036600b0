"""CFCML: coarse-to-fine crossmodal learning (Liu et al., arXiv 2603.20016).

Paper: "CFCML: A Coarse-to-Fine Crossmodal Learning Framework For Disease Diagnosis Using
Multimodal Images and Tabular Data", arXiv 2603.20016.  Authors' code: github.com/IsDling/CFCML
(HEAD 718d4cf).  Spec: ``/work/shared/specs/cfcml.md``; only the abstract of the paper could be
read, so the structure follows the released code.

Coarse stage: feature maps of the backbone's last four stages are squeezed into a few tokens per
(image modality, stage); at each stage every modality's tokens attend to the other modalities'
tokens and the attention output is *appended* to the query tokens; the four stages of each modality
are merged into one vector ``f_m``; an MLP on the concatenated ``f_m`` classifies.
Fine stage (training only): from the current batch's ``f_m`` build one prototype per
(modality, class) and one crossmodal prototype per class, and add three multi-positive InfoNCE
losses whose anchors are samples, unimodal prototypes and crossmodal prototypes (HRM).  The
prototypes are a differentiable function of the batch (no memory, no EMA, no stop-gradient) and
play no role at inference.

Multi-view datasets: each view is its own image modality (upstream: Derm7pt clinic + dermoscopy),
all sharing one backbone, so M = V + 1.  The harness image mask removes every view; a view that is
really absent is treated like a missing modality.

Deviations from upstream, each a config option (see :class:`CFCMLOptions`):

* ``tab_tokens``: upstream embeds every tabular field as a sentence with a frozen CLIP text model;
  CLIP cannot be loaded here.  ``from_encoder`` (default) maps the shared tabular encoder's output
  to ``tab_num_tokens`` tokens (keeps the shared encoder for a fair comparison); ``per_feature``
  gives one learned token per raw column (closest to one-token-per-field).
* Missing modalities (upstream assumes every modality is present): encoders run on present rows
  only; attention hides absent modalities' tokens with a key-padding mask, and a query row with no
  visible key gets a zero attention output (never an all-masked softmax); ``absent_fill`` (``zero``
  default, or ``learned``: one zero-initialised vector per modality) replaces an absent ``f_m``
  before the head; the HRM losses use present (sample, modality) pairs only, drop prototypes with
  an empty set and skip anchors without a positive (constant 1/M and 1/K factors are kept).
* ``detach_early_stages`` (default false): stops gradients into stages 1-3, which upstream's 2-D
  (Swin) run does by accident; its 3-D run trains all stages.
* ``warmup_from_zero`` (default false): upstream's warm-up runs its first epoch at lr 0
  (epoch e uses base*e/5); by default epoch e uses base*(e+1)/5.
* ``stages``: ``all`` (the last four backbone stages, upstream) or ``last`` (stage 4 only, the
  ablation of the spec's check 8).
* ``saturate`` (default true): reproduces upstream's ``-log(p + 1e-8)`` per anchor stably as
  ``-logaddexp(-l, log 1e-8)``; ``false`` gives the plain InfoNCE form.
* Sampler: class-balanced batches of floor(B/K) per class as upstream, but ceil(N/B) steps per epoch
  (the same number of samples as every other method); ``balanced_sampler: false`` uses the harness's
  shuffled batches instead.
* Optimiser: Adam with the harness's weight decay (its default 1e-4 equals upstream's) and the
  harness's base lr; with a pretrained backbone the backbone lr is ``backbone_lr_scale`` x base
  (upstream 0.1).  Warm-up ``warmup_epochs`` (5), then x ``decay_factor`` (0.8) every
  ``decay_every`` (5) epochs, stepped per epoch, as upstream.
* ``multilabel`` (default ``one_vs_rest``): the prototype losses are defined for single-label classes
  only.  For a multilabel task a sample belongs to the class set S_{m,k} of every label k it has,
  and its negatives for label k are the samples without label k; with one-hot labels this is
  exactly the single-label definition.  CE becomes the harness's BCE.  The balanced sampler then
  draws floor(B/K) positives of each label (a sample drawn for two labels appears once).
  ``error`` refuses multilabel datasets instead.
* Input normalisation is the harness's (upstream skipped it and fed BGR, a bug not copied); model
  selection is the harness's validation rule (upstream's MEN run picked epochs on the test fold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, TabularEncoder, create_image_backbone
from core.errors import ConfigError
from methods import register_method
from methods.base import FusionMethod, OptimizerSettings, Stage

# Masked similarities are replaced by this before a logsumexp: exp(-1e4 - max) is exactly 0 in fp32
# and fp64 (similarities are bounded by 2/tau), and, unlike -inf, an all-masked row stays finite,
# so neither the value nor the gradient of a skipped anchor can become NaN.
_MASKED = -1.0e4
_UPSTREAM_EPS = 1e-8   # upstream adds 1e-8 inside the log of every anchor's positive share


@dataclass(frozen=True)
class CFCMLOptions:
    d_model: int = 128             # token width d (code)
    heads: int = 4                 # attention heads (code)
    l_img: int = 32                # tokens per image modality after compression (Derm7pt run.sh)
    l_tab: int = 24                # tabular tokens after compression (Derm7pt run.sh)
    tab_tokens: Literal["from_encoder", "per_feature"] = "from_encoder"   # (adapt) see docstring
    tab_num_tokens: int | None = None  # T for from_encoder; None = number of raw columns, max 16
    stages: Literal["all", "last"] = "all"   # last four backbone stages, or stage 4 only (ablation)
    tau: float = 0.07              # contrastive temperature (code)
    w_ce: float = 1.0
    w_sam: float = 0.04            # sample-anchor loss weight (Derm7pt run.sh)
    w_up: float = 0.06             # unimodal-prototype-anchor loss weight
    w_cp: float = 0.18             # crossmodal-prototype-anchor loss weight
    saturate: bool = True          # reproduce upstream's -log(p + 1e-8)
    head_dropout: float = 0.5      # both head dropouts (code)
    head_hidden: int = 16          # second head layer width (code)
    absent_fill: Literal["zero", "learned"] = "zero"   # (adapt) f_m of an absent modality
    detach_early_stages: bool = False
    warmup_from_zero: bool = False
    warmup_epochs: int = 5
    decay_every: int = 5
    decay_factor: float = 0.8
    backbone_lr_scale: float = 0.1   # only with a pretrained backbone (upstream fine-tuning)
    balanced_sampler: bool = True
    multilabel: Literal["one_vs_rest", "error"] = "one_vs_rest"

    def validate(self, where: str) -> None:
        for name in ("d_model", "heads", "l_img", "l_tab", "head_hidden", "decay_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ConfigError(f"{where}.heads: d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.tab_num_tokens is not None and self.tab_num_tokens < 1:
            raise ConfigError(f"{where}.tab_num_tokens: must be >= 1 or null, got {self.tab_num_tokens}")
        if self.tau <= 0:
            raise ConfigError(f"{where}.tau: must be > 0, got {self.tau}")
        for name in ("w_ce", "w_sam", "w_up", "w_cp", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"{where}.head_dropout: must be in [0, 1), got {self.head_dropout}")
        if not 0 < self.decay_factor <= 1:
            raise ConfigError(f"{where}.decay_factor: must be in (0, 1], got {self.decay_factor}")
        if self.backbone_lr_scale <= 0:
            raise ConfigError(f"{where}.backbone_lr_scale: must be > 0, got {self.backbone_lr_scale}")


# ---------------------------------------------------------------------------------------------
# Fine stage: prototypes and the three HRM losses (pure functions, so tests can check them alone)
# ---------------------------------------------------------------------------------------------
def build_prototypes(z: torch.Tensor, members: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Unimodal and crossmodal prototypes of one batch.

    ``z`` (B, M, d) unit vectors; ``members`` (B, M, K) bool, True where sample i is a present
    member of class k in modality m (the set S_{m,k}).  Returns ``u`` (M, K, d), ``c`` (K, d) —
    normalised means, zero where the set is empty — and the validity masks ``valid_u`` (M, K),
    ``valid_c`` (K,) and the counts ``n_mk`` (M, K).  Differentiable: gradients reach every member.
    """
    weights = members.to(z.dtype)
    n_mk = weights.sum(0)
    u = F.normalize(torch.einsum("bmk,bmd->mkd", weights, z) / n_mk.clamp(min=1.0).unsqueeze(-1), dim=-1)
    n_k = n_mk.sum(0)
    c = F.normalize(torch.einsum("bmk,bmd->kd", weights, z) / n_k.clamp(min=1.0).unsqueeze(-1), dim=-1)
    return u, c, n_mk > 0, n_k > 0, n_mk


def _anchor_loss(pos: torch.Tensor, pos_mask: torch.Tensor, neg: torch.Tensor, neg_mask: torch.Tensor,
                 saturate: bool) -> torch.Tensor:
    """Multi-positive InfoNCE per anchor: logsumexp(pos and neg) - logsumexp(pos), masked.

    The leading dimensions index anchors, the last one the items; masks broadcast to the logits.
    """
    pos_mask = pos_mask.expand_as(pos)
    neg_mask = neg_mask.expand_as(neg)
    masked_pos = torch.where(pos_mask, pos, pos.new_tensor(_MASKED))
    masked_all = torch.cat([masked_pos, torch.where(neg_mask, neg, neg.new_tensor(_MASKED))], dim=-1)
    loss = torch.logsumexp(masked_all, dim=-1) - torch.logsumexp(masked_pos, dim=-1)
    if saturate:  # -log(p + 1e-8) with p = exp(-loss), computed without leaving log space
        loss = -torch.logaddexp(-loss, loss.new_tensor(math.log(_UPSTREAM_EPS)))
    return loss


def hrm_losses(features: torch.Tensor, labels: torch.Tensor, present: torch.Tensor | None, tau: float,
               saturate: bool = True, cos_shift: float = 0.0) -> dict[str, torch.Tensor]:
    """The three HRM losses of one batch, vectorised over anchors (spec "Losses").

    ``features`` (B, M, d) per-modality vectors f_m (any scale; they are normalised here);
    ``labels`` (B, K) class membership (one-hot for single-label tasks, 0/1 for multilabel);
    ``present`` (B, M) bool or None (all present).  Computed in fp32 (fp64 kept) with autocast
    off: exp(1/tau) overflows fp16.  ``cos_shift`` adds a constant to every cosine (upstream's +1;
    it cancels, a test checks it).  Returns ``sam``, ``up``, ``cp`` and the prototypes.
    """
    if features.dtype not in (torch.float32, torch.float64):
        features = features.float()
    b, m, _ = features.shape
    k = labels.shape[1]
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = F.normalize(features, dim=-1)
        in_class = labels.to(torch.bool)
        if present is None:
            present = torch.ones(b, m, dtype=torch.bool, device=features.device)
        present = present.to(torch.bool)
        members = present.unsqueeze(2) & in_class.unsqueeze(1)            # (B, M, K) = S_{m,k}
        u, c, valid_u, valid_c, n_mk = build_prototypes(z, members)

        def sim(x: torch.Tensor) -> torch.Tensor:
            return (x + cos_shift) / tau

        # Sample anchors z_{i,m}, i in S_{m,k}: Pos = {c_k} + {u_{m',k}}, Neg = same-modality
        # samples outside class k.
        s_zc = sim(torch.einsum("bmd,kd->bmk", z, c)).unsqueeze(-1)             # (B, M, K, 1)
        s_zu = sim(torch.einsum("bmd,nkd->bmkn", z, u))                         # (B, M, K, M)
        pos = torch.cat([s_zc, s_zu], dim=-1)
        pos_mask = torch.cat([valid_c.view(1, 1, k, 1).expand(1, 1, k, 1),
                              valid_u.t().view(1, 1, k, m)], dim=-1)            # (1, 1, K, M+1)
        s_zz = sim(torch.einsum("imd,jmd->imj", z, z)).unsqueeze(2)             # (B, M, 1, B)
        neg_mask = (present.t().unsqueeze(1) & ~in_class.t().unsqueeze(0)).unsqueeze(0)  # (1, M, K, B)
        loss = _anchor_loss(pos, pos_mask, s_zz.expand(b, m, k, b), neg_mask, saturate)
        ok = members & pos_mask.any(-1)
        weight = members.to(loss.dtype) / n_mk.clamp(min=1.0).unsqueeze(0)
        l_sam = (torch.where(ok, loss, torch.zeros_like(loss)) * weight).sum()

        # Unimodal prototype anchors u_{m,k}: Pos = {c_k}, Neg = {u_{m',l} : l != k}.
        other = ~torch.eye(k, dtype=torch.bool, device=z.device)
        pos = sim(torch.einsum("mkd,kd->mk", u, c)).unsqueeze(-1)              # (M, K, 1)
        pos_mask = valid_c.view(1, k, 1)
        neg = sim(torch.einsum("mkd,nld->mknl", u, u)).reshape(m, k, m * k)
        neg_mask = (valid_u.view(1, 1, m, k) & other.view(1, k, 1, k)).reshape(1, k, m * k)
        loss = _anchor_loss(pos, pos_mask, neg, neg_mask, saturate)
        ok = valid_u & pos_mask.view(1, k)
        l_up = torch.where(ok, loss, torch.zeros_like(loss)).sum() / m

        # Crossmodal prototype anchors c_k: Pos = {u_{m,k}}, Neg = {c_l : l != k}.
        pos = sim(torch.einsum("kd,mkd->km", c, u))                            # (K, M)
        pos_mask = valid_u.t()
        neg = sim(c @ c.t())
        neg_mask = valid_c.view(1, k) & other
        loss = _anchor_loss(pos, pos_mask, neg, neg_mask, saturate)
        ok = valid_c & pos_mask.any(-1)
        l_cp = torch.where(ok, loss, torch.zeros_like(loss)).sum() / k
    return {"sam": l_sam, "up": l_up, "cp": l_cp, "u": u, "c": c, "valid_u": valid_u, "valid_c": valid_c}


# ---------------------------------------------------------------------------------------------
# Coarse stage building blocks
# ---------------------------------------------------------------------------------------------
def _scatter_rows(out_shape: tuple[int, ...], rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Zeros of ``out_shape`` with ``values`` at batch ``rows``: absent rows are exact zeros."""
    out = values.new_zeros(out_shape)
    return out.index_copy(0, rows, values) if rows.numel() else out


class StageCompressor(nn.Module):
    """(B, N_g, C_g) -> (B, L, d): Conv1d over tokens-as-channels (kernel 3 along the feature
    axis), then Linear(C_g -> d) without activation (code)."""

    def __init__(self, n_tokens: int, channels: int, n_out: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_tokens, n_out, kernel_size=3, padding=1)
        self.proj = nn.Linear(channels, d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(tokens))


class TabularTokens(nn.Module):
    """Tabular tokens (adapt; upstream: frozen CLIP text embeddings of each field).

    ``from_encoder``: shared TabularEncoder -> Linear(C_t -> T*d) -> (B, T, d) -> ReLU.
    ``per_feature``: token j = Linear(encoded slice of raw column j -> d) (x_j*e_j + b_j for a
    numeric column), then a shared Linear(d -> d) + ReLU.  Both end with Conv1d(T -> L_tab).
    """

    def __init__(self, mode: str, encoder: TabularEncoder | None, n_tokens: int, d_model: int,
                 n_out: int, column_slices: tuple[tuple[int, int], ...], in_dim: int) -> None:
        super().__init__()
        self.mode = mode
        self.d_model = d_model
        self.n_tokens = n_tokens
        if mode == "from_encoder":
            assert encoder is not None
            self.encoder = encoder
            self.expand = nn.Linear(encoder.out_dim, n_tokens * d_model)
        else:
            column_of = torch.full((in_dim,), -1, dtype=torch.long)
            for j, (start, stop) in enumerate(column_slices):
                column_of[start:stop] = j
            if (column_of < 0).any():
                raise ConfigError("method 'cfcml' options.tab_tokens=per_feature: the dataset's "
                                  "tabular_column_slices do not cover every encoded feature")
            self.register_buffer("column_of", column_of, persistent=False)
            self.feature_weight = nn.Parameter(torch.randn(in_dim, d_model) * (1.0 / math.sqrt(d_model)))
            self.column_bias = nn.Parameter(torch.zeros(n_tokens, d_model))
            self.shared = nn.Linear(d_model, d_model)
        self.compress = nn.Conv1d(n_tokens, n_out, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "from_encoder":
            tokens = F.relu(self.expand(self.encoder(x)).view(x.shape[0], self.n_tokens, self.d_model))
        else:
            per_feature = x.unsqueeze(-1) * self.feature_weight                      # (B, F, d)
            tokens = per_feature.new_zeros(x.shape[0], self.n_tokens, self.d_model)
            tokens = tokens.index_add(1, self.column_of, per_feature) + self.column_bias
            tokens = F.relu(self.shared(tokens))
        return self.compress(tokens)


@register_method("cfcml")
class CFCML(FusionMethod):
    display_name = "CFCML"
    Options = CFCMLOptions
    search_space = {
        "options.w_sam": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
        "options.w_up": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
        "options.w_cp": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
        "options.tau": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
        "options.l_img": {"type": "int", "low": 8, "high": 64, "log": True},
        "options.l_tab": {"type": "int", "low": 8, "high": 32, "log": True},
        "options.head_dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "options.tab_tokens": {"type": "categorical", "choices": ["from_encoder", "per_feature"]},
    }

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, **options: Any) -> None:
        super().__init__(info, encoders, **options)
        o = self.options
        if self.multilabel and o.multilabel == "error" and (o.w_sam or o.w_up or o.w_cp):
            raise ConfigError("method 'cfcml': the HRM prototype losses are defined for single-label "
                              f"classes and dataset '{info.name}' is multilabel; set options.multilabel: "
                              "one_vs_rest, or options.w_sam/w_up/w_cp: 0 for the coarse stage only")
        if info.tabular_dim < 1:
            raise ConfigError(f"method 'cfcml': dataset '{info.name}' has no tabular features")
        self.views = tuple(info.views)
        self.num_views = len(self.views)
        self.num_modalities = self.num_views + 1          # image views, then tabular
        self.image_hw = tuple(int(s) for s in info.image_shape)
        d = o.d_model

        # 1. Backbone: the last four stages (or the last one for the ablation), from the harness.
        n_stages = 4 if o.stages == "all" else 1
        out_indices = tuple(range(-n_stages, 0))
        try:
            self.backbone = create_image_backbone(encoders.image, info.image_channels,
                                                  features_only=True, out_indices=out_indices)
        except (IndexError, ValueError, AssertionError, RuntimeError) as exc:
            raise ConfigError(f"encoders.image.model: '{encoders.image.model}' cannot give the last "
                              f"{n_stages} feature stages that CFCML needs ({exc})") from None
        channels = list(self.backbone.feature_info.channels())
        self.stage_tokens, self.stage_channels, self.nhwc = self._probe_stages(channels, info)
        self.num_stages = len(self.stage_tokens)
        if self.num_stages != n_stages:
            raise ConfigError(f"encoders.image.model: '{encoders.image.model}' gives {self.num_stages} "
                              f"feature stages, CFCML (options.stages={o.stages}) needs {n_stages}")

        # 2. One compressor per (stage, image modality).
        self.compressors = nn.ModuleList([
            nn.ModuleList([StageCompressor(n, ch, o.l_img, d) for _ in self.views])
            for n, ch in zip(self.stage_tokens, self.stage_channels)])

        # 3. Tabular tokens, shared by every stage (code: one layer).
        # Raw columns (a one-hot categorical is one column); without a schema, one per feature.
        slices = tuple(info.tabular_column_slices) or tuple((i, i + 1) for i in range(info.tabular_dim))
        n_columns = len(slices)
        if o.tab_tokens == "from_encoder":
            t = o.tab_num_tokens or min(n_columns, 16)
            encoder = self.build_tabular_encoder()
        else:
            t, encoder = n_columns, None
        self.tabular_tokens = TabularTokens(o.tab_tokens, encoder, t, d, o.l_tab, slices, info.tabular_dim)
        self.token_counts = [o.l_img] * self.num_views + [o.l_tab]

        # 4. Crossmodal enhancement: one attention per (stage, modality).
        self.attention = nn.ModuleList([
            nn.ModuleList([nn.MultiheadAttention(d, o.heads, batch_first=True)
                           for _ in range(self.num_modalities)])
            for _ in range(self.num_stages)])
        # 5. Stage merge per modality: Conv1d(2*G*L_m -> L_m) over tokens-as-channels, then mean.
        self.merge = nn.ModuleList([nn.Conv1d(2 * self.num_stages * n, n, kernel_size=3, padding=1)
                                    for n in self.token_counts])
        if o.absent_fill == "learned":
            self.absent_vectors = nn.Parameter(torch.zeros(self.num_modalities, d))
        # 6. Head.
        self.head = nn.Sequential(
            nn.Linear(self.num_modalities * d, d), nn.ReLU(), nn.Dropout(o.head_dropout),
            nn.Linear(d, o.head_hidden), nn.ReLU(), nn.Dropout(o.head_dropout),
            nn.Linear(o.head_hidden, info.num_classes))

    # -- build helpers ------------------------------------------------------------------------
    def _probe_stages(self, channels: list[int], info: DatasetInfo) -> tuple[list[int], list[int], list[bool]]:
        """N_g, C_g and the layout (NCHW or NHWC) of each stage, from one dummy forward.

        The compressors' Conv1d has N_g input channels, so the image size is fixed at build time.
        """
        if len(self.image_hw) != 2:
            raise ConfigError(f"method 'cfcml': dataset '{info.name}' has image shape {info.image_shape}; "
                              "only 2-D images (H, W) are supported")
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            outs = self.backbone(torch.zeros(1, info.image_channels, *self.image_hw))
        self.backbone.train(was_training)
        fmt = getattr(self.backbone, "output_fmt", None)
        tokens, chans, nhwc = [], [], []
        for out, ch in zip(outs, channels):
            if out.dim() != 4:
                raise ConfigError(f"encoders.image.model: stage output of shape {tuple(out.shape)} is "
                                  "not a 2-D feature map; CFCML needs (B, C, H, W) or (B, H, W, C)")
            is_nchw, is_nhwc = out.shape[1] == ch, out.shape[-1] == ch
            if is_nchw and is_nhwc:   # ambiguous (H == C): trust the model's declared format
                is_nchw = str(fmt) != "NHWC" and not str(fmt).endswith("NHWC")
            if not (is_nchw or is_nhwc):
                raise ConfigError(f"encoders.image.model: stage output {tuple(out.shape)} has no axis "
                                  f"of {ch} channels (feature_info)")
            h, w = (out.shape[2], out.shape[3]) if is_nchw else (out.shape[1], out.shape[2])
            tokens.append(int(h * w))
            chans.append(int(ch))
            nhwc.append(not is_nchw)
        return tokens, chans, nhwc

    # -- coarse stage -------------------------------------------------------------------------
    def modality_presence(self, batch: Batch) -> torch.Tensor:
        """(B, M) bool: each view (absent with the image modality or on its own), then tabular."""
        views = batch.view_present.to(torch.bool) & batch.image_present.to(torch.bool).unsqueeze(1)
        return torch.cat([views, batch.tabular_present.to(torch.bool).unsqueeze(1)], dim=1)

    def _image_tokens(self, batch: Batch, present: torch.Tensor) -> list[list[torch.Tensor]]:
        """Z[g][v] (B, L_img, d): backbone once over all present (sample, view) pairs, then each
        view's compressor on its rows; absent (sample, view) pairs are exact zeros."""
        for view in self.views:
            if tuple(batch.images[view].shape[-2:]) != self.image_hw:
                raise ConfigError(f"method 'cfcml': images of view '{view}' are "
                                  f"{tuple(batch.images[view].shape[-2:])}, the model was built for "
                                  f"{self.image_hw}; CFCML's token compressors fix the image size")
        stacked = torch.stack([batch.images[v] for v in self.views], dim=1)    # (B, V, C, H, W)
        b, v = stacked.shape[:2]
        pairs = torch.nonzero(present[:, :v].reshape(-1), as_tuple=False).flatten()
        d = self.options.d_model
        if pairs.numel():
            maps = self.backbone(stacked.flatten(0, 1).index_select(0, pairs))
        else:
            maps = [None] * self.num_stages
        result: list[list[torch.Tensor]] = []
        for g, fmap in enumerate(maps):
            per_view = []
            if fmap is not None:
                if not self.nhwc[g]:
                    fmap = fmap.permute(0, 2, 3, 1)
                tokens = fmap.reshape(fmap.shape[0], self.stage_tokens[g], self.stage_channels[g])
                if self.options.detach_early_stages and g < self.num_stages - 1:
                    tokens = tokens.detach()
            for view in range(v):
                if fmap is None:
                    per_view.append(stacked.new_zeros(b, self.options.l_img, d))
                    continue
                sel = torch.nonzero(pairs % v == view, as_tuple=False).flatten()
                rows = pairs.index_select(0, sel) // v
                values = self.compressors[g][view](tokens.index_select(0, sel))
                per_view.append(_scatter_rows((b, self.options.l_img, d), rows, values))
            result.append(per_view)
        return result

    def _tabular_tokens(self, batch: Batch, present: torch.Tensor) -> torch.Tensor:
        rows = torch.nonzero(present, as_tuple=False).flatten()
        shape = (len(batch), self.options.l_tab, self.options.d_model)
        if not rows.numel():
            return batch.tabular.new_zeros(shape)
        return _scatter_rows(shape, rows, self.tabular_tokens(batch.tabular.index_select(0, rows)))

    def _enhance(self, g: int, m: int, tokens: list[torch.Tensor], present: torch.Tensor | None) -> torch.Tensor:
        """CIE: modality m's stage-g tokens attend to the other modalities' tokens; the output is
        appended to the queries.  Absent modalities' tokens are hidden; a row with no visible key
        gets a zero output (computed with the mask lifted, so softmax never sees an all-masked row)."""
        others = [j for j in range(self.num_modalities) if j != m]
        keys = torch.cat([tokens[j] for j in others], dim=1)
        mask, has_key = None, None
        if present is not None:
            hidden = torch.cat([(~present[:, j]).unsqueeze(1).expand(-1, self.token_counts[j])
                                for j in others], dim=1)                      # (B, sum L_j)
            if bool(hidden.any()):
                has_key = ~hidden.all(dim=1)
                mask = hidden & has_key.unsqueeze(1)
        attended, _ = self.attention[g][m](tokens[m], keys, keys, key_padding_mask=mask, need_weights=False)
        if has_key is not None:
            attended = attended * has_key.to(attended.dtype).view(-1, 1, 1)
        return torch.cat([tokens[m], attended], dim=1)

    def forward_features(self, batch: Batch, use_mask: bool = True,
                         intermediates: bool = False) -> dict[str, Any]:
        """Per-modality vectors f (B, M, d) before the absent fill, presence (B, M), logits (B, K).

        ``use_mask=False`` is the plain all-present implementation (no row selection, no key
        masks); with an all-ones mask the masked path must reproduce it bit for bit (a test)."""
        b = len(batch)
        if use_mask:
            present = self.modality_presence(batch)
        else:
            present = torch.ones(b, self.num_modalities, dtype=torch.bool, device=batch.tabular.device)
        image_tokens = self._image_tokens(batch, present)
        tab = self._tabular_tokens(batch, present[:, -1])
        enhanced: list[list[torch.Tensor]] = []
        for g in range(self.num_stages):
            tokens = image_tokens[g] + [tab]
            enhanced.append([self._enhance(g, m, tokens, present if use_mask else None)
                             for m in range(self.num_modalities)])
        merged = [torch.cat([enhanced[g][m] for g in range(self.num_stages)], dim=1)
                  for m in range(self.num_modalities)]
        features = torch.stack([self.merge[m](merged[m]).mean(dim=1) for m in range(self.num_modalities)], dim=1)
        filled = features
        if use_mask:
            if self.options.absent_fill == "learned":
                fill = self.absent_vectors.unsqueeze(0).to(features.dtype)
            else:
                fill = features.new_zeros(())
            filled = torch.where(present.unsqueeze(-1), features, fill)
        logits = self.head(filled.flatten(1))
        out: dict[str, Any] = {"features": features, "present": present, "logits": logits}
        if intermediates:
            out.update(enhanced=enhanced, merged=merged, filled=filled)
        return out

    # -- the contract ---------------------------------------------------------------------------
    def class_membership(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) bool: one-hot for single-label tasks, the label vector for multilabel."""
        if self.multilabel:
            return labels > 0.5
        return F.one_hot(labels.long(), self.info.num_classes).to(torch.bool)

    def losses(self, out: dict[str, Any], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.options
        ce = self.classification_loss(out["logits"], labels)
        total = o.w_ce * ce
        result = {"loss_ce": ce}
        if o.w_sam or o.w_up or o.w_cp:
            hrm = hrm_losses(out["features"], self.class_membership(labels), out["present"], o.tau, o.saturate)
            total = total + o.w_sam * hrm["sam"] + o.w_up * hrm["up"] + o.w_cp * hrm["cp"]
            result.update(loss_sam=hrm["sam"], loss_up=hrm["up"], loss_cp=hrm["cp"])
        result["loss"] = total
        return result

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        return self.losses(self.forward_features(batch), batch.labels)

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        return self.probabilities(self.forward_features(batch)["logits"])

    def train_batches(self, labels: np.ndarray, batch_size: int,
                      rng: np.random.Generator) -> Iterator[np.ndarray] | None:
        """Class-balanced batches: floor(B/K) random samples of every class, ceil(N/B) steps.

        Each class is drawn from its own reshuffled cycle, so a minority class is oversampled and
        every training sample of a class is used before any repeats.  Multilabel: floor(B/K)
        positives of each label, de-duplicated.
        """
        if not self.options.balanced_sampler:
            return None
        labels = np.asarray(labels)
        k = self.info.num_classes
        per_class = batch_size // k
        if per_class < 1:
            raise ConfigError(f"training.batch_size: {batch_size} is smaller than the {k} classes; "
                              "CFCML's class-balanced sampler needs at least one sample per class")
        if labels.ndim == 2:
            pools = [np.flatnonzero(labels[:, j] > 0.5) for j in range(k)]
        else:
            pools = [np.flatnonzero(labels == j) for j in range(k)]
        pools = [p for p in pools if len(p)]
        steps = math.ceil(len(labels) / batch_size)
        return _balanced_batches(pools, per_class, steps, rng, dedupe=labels.ndim == 2)

    def configure_optimizer(self, settings: OptimizerSettings) -> tuple[torch.optim.Optimizer | None, Any]:
        """Adam (coupled weight decay, as upstream), warm-up then step decay, stepped per epoch."""
        o = self.options
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        backbone_ids = {id(p) for p in backbone}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        if self.encoder_config.image.pretrained_path:
            groups = [{"params": backbone, "lr": settings.lr * o.backbone_lr_scale},
                      {"params": rest, "lr": settings.lr}]
        else:
            groups = [{"params": backbone + rest, "lr": settings.lr}]
        optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return optimizer, scheduler

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the base lr in epoch ``epoch`` (0-based)."""
        o = self.options
        if epoch < o.warmup_epochs:
            return (epoch if o.warmup_from_zero else epoch + 1) / o.warmup_epochs
        return o.decay_factor ** ((epoch - o.warmup_epochs) // o.decay_every)


def _balanced_batches(pools: list[np.ndarray], per_class: int, steps: int, rng: np.random.Generator,
                      dedupe: bool) -> Iterator[np.ndarray]:
    """``steps`` batches of ``per_class`` draws from each pool; each pool is a reshuffled cycle."""
    orders = [rng.permutation(p) for p in pools]
    cursors = [0] * len(pools)
    for _ in range(steps):
        parts = []
        for i, pool in enumerate(pools):
            take = []
            while len(take) < per_class:
                if cursors[i] == len(orders[i]):
                    orders[i], cursors[i] = rng.permutation(pool), 0
                n = min(per_class - len(take), len(orders[i]) - cursors[i])
                take.extend(orders[i][cursors[i]:cursors[i] + n].tolist())
                cursors[i] += n
            parts.extend(take)
        batch = np.asarray(parts, dtype=np.int64)
        if dedupe:
            batch = np.unique(batch)
        yield rng.permutation(batch)
