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
* Optimiser: Adam (PyTorch's fused kernel: the same update) with the harness's weight decay (its
  default 1e-4 equals upstream's) and the harness's base lr; with a pretrained backbone the
  backbone lr is ``backbone_lr_scale`` x base (upstream 0.1).  Base lr: the recipe's from-scratch
  value 5e-4 (upstream's 3-D MEN run, one parameter group; its 2-D run fine-tunes a pretrained
  Swin-T at 1e-4), set in ``configs/methods/cfcml.yaml`` ``training.lr``; the pretrained preset
  uses 1e-4.  Schedule (adapt): upstream warms up over 5 of its 50 epochs, then x ``decay_factor``
  (0.8) every 5 epochs, stepped per epoch.  Here both are *fractions of the shared budget*
  (``warmup_fraction`` 0.1, ``decay_fraction`` 0.1), so the schedule has the same shape at every
  ``max_epochs``; ``warmup_epochs`` / ``decay_every`` give upstream's absolute epochs (paper
  presets).  A budget without one epoch after the warm-up is an error naming the minimum.
* ``multilabel`` (default ``one_vs_rest``): the prototype losses are defined for single-label classes
  only.  For a multilabel task a sample belongs to the class set S_{m,k} of every label k it has,
  and its negatives for label k are the samples without label k; with one-hot labels this is
  exactly the single-label definition.  CE becomes the harness's BCE.  The balanced sampler then
  draws floor(B/K) positives of each label (a sample drawn for two labels appears once).
  ``error`` refuses multilabel datasets instead.
* Input normalisation is the harness's (upstream skipped it and fed BGR, a bug not copied); model
  selection is the harness's validation rule (upstream's MEN run picked epochs on the test fold).
* The backbone runs through the shared ``core.encoders.encode_present`` (present images only; a
  training batch with a single present image uses BatchNorm's running statistics for that call,
  as every other method's encoder does).

How the coarse stage is computed (issue #20; the function is the spec's, the order of operations
is not): the stage merge is followed by a mean over its output tokens, so only kernel-tap
weighted sums of the merged tokens matter; those are pushed through the linear parts (attention
values and output projection, the compressors' Linear) so that no attention output, enhanced or
merged token tensor is formed, the query/key projections of image tokens act on the compressor
Conv1d output with composed weights, all stages share one batched softmax per query modality,
and attention is evaluated only on samples with at least two modalities (elsewhere its output
is zero or unused).  ``forward_features(..., intermediates=True)`` runs the explicit version
(``nn.MultiheadAttention`` modules, Conv1d merge) that a test compares against; the parameters
are the same modules either way, so checkpoints are unchanged.
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
from core.encoders import EncoderConfig, TabularEncoder, create_image_backbone, encode_present
from core.errors import ConfigError
from methods import register_method
from methods.base import FusionMethod, OptimizerSettings, Stage, WarmupStepSchedule

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
    warmup_fraction: float = 0.1   # (adapt) upstream 5 of 50 epochs, as a share of the budget
    decay_fraction: float = 0.1    # (adapt) upstream: x decay_factor every 5 of 50 epochs
    warmup_epochs: int | None = None  # upstream's absolute epochs (paper preset: 5); overrides the fraction
    decay_every: int | None = None    # upstream's absolute epochs (paper preset: 5); overrides the fraction
    decay_factor: float = 0.8
    backbone_lr_scale: float = 0.1   # only with a pretrained backbone (upstream fine-tuning)
    balanced_sampler: bool = True
    multilabel: Literal["one_vs_rest", "error"] = "one_vs_rest"

    def validate(self, where: str) -> None:
        for name in ("d_model", "heads", "l_img", "l_tab", "head_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ConfigError(f"{where}.heads: d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.tab_num_tokens is not None and self.tab_num_tokens < 1:
            raise ConfigError(f"{where}.tab_num_tokens: must be >= 1 or null, got {self.tab_num_tokens}")
        if self.tau <= 0:
            raise ConfigError(f"{where}.tau: must be > 0, got {self.tau}")
        for name in ("w_ce", "w_sam", "w_up", "w_cp"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_epochs", "decay_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1 or null (null: the *_fraction option), "
                                  f"got {getattr(self, name)}")
        for name in ("warmup_fraction", "decay_fraction"):
            if not 0 < getattr(self, name) <= 0.5:
                raise ConfigError(f"{where}.{name}: must be in (0, 0.5], got {getattr(self, name)}")
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


def _split_attention(mha: nn.MultiheadAttention) -> tuple[torch.Tensor, ...]:
    """(W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o) of a packed ``nn.MultiheadAttention`` (unbind, so
    the backward is one stack rather than a zero-filled copy per slice)."""
    w_q, w_k, w_v = mha.in_proj_weight.view(3, mha.embed_dim, mha.embed_dim).unbind(0)
    b_q, b_k, b_v = mha.in_proj_bias.view(3, mha.embed_dim).unbind(0)
    return w_q, b_q, w_k, b_k, w_v, b_v, mha.out_proj.weight, mha.out_proj.bias


class StageCompressor(nn.Module):
    """(B, N_g, C_g) -> (B, L, d): Conv1d over tokens-as-channels (kernel 3 along the feature
    axis), then Linear(C_g -> d) without activation (code)."""

    def __init__(self, n_tokens: int, channels: int, n_out: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_tokens, n_out, kernel_size=3, padding=1)
        self.proj = nn.Linear(channels, d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(tokens))


class _StageTokens(nn.Module):
    """The backbone's stage maps of n images as one flat (n, sum_g N_g*C_g) tensor of
    tokens-first (NHWC) maps, so the shared ``core.encoders.encode_present`` can run the backbone
    (present rows only, single-row BatchNorm fallback).  Built per call around the model's own
    backbone; it holds no parameters of its own."""

    def __init__(self, backbone: nn.Module, nhwc: list[bool]) -> None:
        super().__init__()
        self.backbone = backbone
        self.nhwc = nhwc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(x)
        return torch.cat([(fmap if nhwc else fmap.permute(0, 2, 3, 1)).reshape(fmap.shape[0], -1)
                          for fmap, nhwc in zip(maps, self.nhwc)], dim=1)


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

    def _stage_inputs(self, batch: Batch, present: torch.Tensor) -> list[torch.Tensor]:
        """X[g] (B, V, N_g, C_g): stage-g backbone tokens of every (sample, view), exact zeros for
        absent pairs.  One backbone pass over the present pairs only, through the shared
        ``encode_present`` (so a training batch with a single present image uses the BatchNorm
        running statistics, as every other method's encoder does)."""
        for view in self.views:
            if tuple(batch.images[view].shape[-2:]) != self.image_hw:
                raise ConfigError(f"method 'cfcml': images of view '{view}' are "
                                  f"{tuple(batch.images[view].shape[-2:])}, the model was built for "
                                  f"{self.image_hw}; CFCML's token compressors fix the image size")
        stacked = torch.stack([batch.images[v] for v in self.views], dim=1)    # (B, V, C, H, W)
        b, v = stacked.shape[:2]
        sizes = [n * c for n, c in zip(self.stage_tokens, self.stage_channels)]
        reader = _StageTokens(self.backbone, self.nhwc)
        reader.training = self.backbone.training
        flat = encode_present(reader, stacked.flatten(0, 1), present[:, :v].reshape(-1), sum(sizes))
        flat = flat.view(b, v, -1)
        out, start = [], 0
        for g, size in enumerate(sizes):
            tokens = flat[:, :, start:start + size].view(b, v, self.stage_tokens[g], self.stage_channels[g])
            if self.options.detach_early_stages and g < self.num_stages - 1:
                tokens = tokens.detach()
            out.append(tokens)
            start += size
        return out

    def _tabular_tokens(self, batch: Batch, present: torch.Tensor) -> torch.Tensor:
        rows = torch.nonzero(present, as_tuple=False).flatten()
        shape = (len(batch), self.options.l_tab, self.options.d_model)
        if not rows.numel():
            return batch.tabular.new_zeros(shape)
        return _scatter_rows(shape, rows, self.tabular_tokens(batch.tabular.index_select(0, rows)))

    def _attention_rows(self, present: torch.Tensor | None) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """Rows whose attention outputs are needed and, per query modality m, an additive key mask
        (n, S_m) with -inf on absent modalities' tokens.

        The rows are the samples with at least two modalities present: elsewhere the one present
        modality sees no key, and such a row's attention output is zero (the explicit path's
        ``has_key`` flag).  Within these rows every query sees at least one key, so softmax never
        meets an all-masked row and no mask has to be lifted; with two modalities nothing is hidden
        on them at all.  Otherwise the mask is always added (no host sync to test whether
        anything is hidden; adding 0 is exact)."""
        if present is None:
            return None, [None] * self.num_modalities
        rows = torch.nonzero(present.sum(dim=1) >= 2, as_tuple=False).flatten()
        if self.num_modalities == 2:   # both present on every such row: nothing to hide
            return rows, [None, None]
        absent = ~present.index_select(0, rows)
        masks = []
        for m in range(self.num_modalities):
            hidden = torch.cat([absent[:, j].unsqueeze(1).expand(-1, self.token_counts[j])
                                for j in range(self.num_modalities) if j != m], dim=1)   # (n, S_m)
            masks.append(torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
                         .masked_fill(hidden, float("-inf")))
        return rows, masks

    def _coarse_features(self, inputs: list[torch.Tensor], tab: torch.Tensor,
                         present: torch.Tensor | None) -> torch.Tensor:
        """f (B, M, d) of the coarse stage, computed without materialising its token tensors.

        The same function as :meth:`_coarse_explicit` (spec modules 2-5), re-associated where it is
        linear (exact algebra, float32 rounding only):

        * stage merge + mean over tokens: the mean of the Conv1d's L_m output channels is one Conv1d
          with the channel-averaged kernel, i.e. a weighted sum of the merged tokens per kernel tap
          (3 per stage and modality) followed by the 3-tap shift along the feature axis;
        * so attention outputs are only needed as those weighted sums: the weights are folded into
          the softmax probabilities first, then into the keys, and the value and output
          projections act on 3 vectors per sample instead of every query token;
        * image tokens Z = Y W_p^T + b_p (compressor Conv1d output Y, Linear(C_g -> d)) enter only
          through linear maps (query/key projections, weighted sums), so those act on Y with the
          composed weights (W W_p, W b_p + b) and Z itself is never formed;
        * the 4*M attentions share one batched softmax per query modality (all stages stacked), and
          each projection of the tabular tokens (shared by the stages) is one matmul for all stages;
        * attention runs on the samples with at least two modalities only (see _attention_rows).

        Entries of absent (sample, modality) pairs are finite placeholders, not the explicit path's
        values: they are replaced before the head and never enter a loss, and as keys they are
        hidden, so nothing downstream depends on them.
        """
        o = self.options
        d, heads, n_stages, n_views = o.d_model, o.heads, self.num_stages, self.num_views
        n_mod = self.num_modalities
        dh = d // heads
        scale = dh ** -0.5
        b = tab.shape[0]
        rows, masks = self._attention_rows(present)
        pick = (lambda x: x) if rows is None else (lambda x: x.index_select(0, rows))

        attn = [[_split_attention(self.attention[g][m]) for m in range(n_mod)] for g in range(n_stages)]

        def stacked(m: int, which: int) -> torch.Tensor:
            """One attention parameter of query modality m for every stage, stacked: (G, ...)."""
            return torch.stack([attn[g][m][which] for g in range(n_stages)])

        def project(y: torch.Tensor, a: torch.Tensor | None, c: torch.Tensor | None, w: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
            """Z W^T + bias for Z = Y A^T + c, as Y (W A)^T + (W c + bias)."""
            if a is None:
                return F.linear(y, w, bias)
            return F.linear(y, w @ a, torch.addmv(bias, w, c))

        def pooled(p: torch.Tensor, y: torch.Tensor, a: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
            """Weighted token sums p @ Z for Z = Y A^T + c: (n, R, L) x (n, L, C) -> (n, R, d)."""
            out = torch.bmm(p, y)
            return out if a is None else F.linear(out, a) + p.sum(-1, keepdim=True) * c

        # Image token sources per stage and view: Z = Y A^T + c (compressor Conv1d output Y, its
        # Linear A, c); the tabular tokens are Z itself.
        images = [[(self.compressors[g][v].conv(inputs[g][:, v]), self.compressors[g][v].proj.weight,
                    self.compressors[g][v].proj.bias) for v in range(n_views)] for g in range(n_stages)]
        # The same sources on the attention rows, shared by every query modality.
        tab_rows = pick(tab)
        src = [[(pick(y), a, c) for y, a, c in images[g]] + [(tab_rows, None, None)] for g in range(n_stages)]
        n = tab_rows.shape[0]

        features = []
        for m in range(n_mod):
            length = self.token_counts[m]
            others = [j for j in range(n_mod) if j != m]
            merge_w = self.merge[m].weight.mean(0).view(n_stages, 2, length, 3)   # (G, 2, L_m, 3)
            w_tok, w_att = merge_w[:, 0], merge_w[:, 1]

            # Own tokens' part of the merge, every row.
            if m == n_views:
                own = w_tok.sum(0).t() @ tab                                      # (B, 3, d)
            else:
                own = 0
                for g in range(n_stages):                                           # (B, 3, d)
                    y, a, c = images[g][m]
                    own = own + F.linear(torch.matmul(w_tok[g].t(), y), a) + w_tok[g].sum(0).unsqueeze(-1) * c

            # Attention part, on the rows that need it (see _attention_rows).

            def tab_projection(which: int, factor: float = 1.0, m: int = m) -> torch.Tensor:
                """(n, L_tab, G, H, dh): one projection of the tabular tokens for every stage at once."""
                w = torch.cat([attn[g][m][which] for g in range(n_stages)])
                bias = torch.cat([attn[g][m][which + 1] for g in range(n_stages)])
                if factor != 1.0:
                    w, bias = w * factor, bias * factor
                return F.linear(tab_rows, w, bias).view(n, o.l_tab, n_stages, heads, dh)

            # Head-major layouts, each written once (contiguous): queries (G, n, H, L, dh) with the
            # 1/sqrt(d_head) score scale folded into their projection, keys transposed
            # (G, n, H, dh, S).
            if m == n_views:
                q = tab_projection(0, scale).permute(2, 0, 3, 1, 4).contiguous()
            else:
                q = torch.stack([project(*src[g][m], attn[g][m][0] * scale, attn[g][m][1] * scale)
                                 .view(n, length, heads, dh).transpose(1, 2) for g in range(n_stages)])
            keys = [tab_projection(2).permute(2, 0, 3, 4, 1) if j == n_views else
                    torch.stack([project(*src[g][j], *attn[g][m][2:4])
                                 .view(n, self.token_counts[j], heads, dh).permute(0, 2, 3, 1)
                                 for g in range(n_stages)]) for j in others]
            k_t = keys[0].contiguous() if len(keys) == 1 else torch.cat(keys, dim=-1)
            del keys                  # intermediates autograd does not keep are freed at once
            s_len = k_t.shape[-1]
            scores = torch.matmul(q, k_t)                                           # (G, n, H, L, S)
            if masks[m] is not None:
                scores = scores + masks[m].view(1, n, 1, 1, s_len)
            probs = scores.softmax(dim=-1)
            del scores
            # Merge weights folded into the probabilities: (G, n, H, 3, S).
            p_w = torch.matmul(w_att.transpose(1, 2).view(n_stages, 1, 1, 3, length), probs)

            # Merge-weighted attention outputs: keys pooled first, then the value and output
            # projections of 3 vectors per (stage, sample).
            start, pooled_keys = 0, None
            for j in others:
                seg = p_w[..., start:start + self.token_counts[j]]                # (G, n, H, 3, L_j)
                if j == n_views:                                                    # all stages at once
                    part = pooled(seg.transpose(0, 1).reshape(n, n_stages * heads * 3, o.l_tab), tab_rows, None, None)
                    part = part.view(n, n_stages, heads, 3, d).transpose(0, 1)
                else:
                    part = torch.stack([pooled(seg[g].reshape(n, heads * 3, self.token_counts[j]), *src[g][j])
                                        .view(n, heads, 3, d) for g in range(n_stages)])
                pooled_keys = part if pooled_keys is None else pooled_keys + part
                start += self.token_counts[j]
            w_v, b_v = stacked(m, 4), stacked(m, 5)
            values = torch.einsum("gnhjd,ghed->gnjhe", pooled_keys, w_v.view(n_stages, heads, dh, d))
            values = values + p_w.sum(-1).transpose(2, 3).unsqueeze(-1) * b_v.view(n_stages, 1, 1, heads, dh)
            attended = torch.einsum("gnjd,ged->gnje", values.reshape(n_stages, n, 3, d), stacked(m, 6))
            attended = attended + (w_att.sum(1).unsqueeze(-1) * stacked(m, 7).unsqueeze(1)).unsqueeze(1)
            attended = attended.sum(0)                                              # (n, 3, d)
            if rows is not None:
                attended = attended.new_zeros(b, 3, d).index_copy(0, rows, attended)
            total = own + attended
            # The 3-tap Conv1d along the feature axis (padding 1) of the pooled tokens.
            f = total[:, 1] + F.pad(total[:, 0, :-1], (1, 0)) + F.pad(total[:, 2, 1:], (0, 1))
            features.append(f + self.merge[m].bias.mean())
        return torch.stack(features, dim=1)

    def _coarse_explicit(self, inputs: list[torch.Tensor], tab: torch.Tensor, present: torch.Tensor | None
                         ) -> tuple[torch.Tensor, list[list[torch.Tensor]], list[torch.Tensor]]:
        """The coarse stage as the spec writes it (tokens Z, enhanced E = [Z; A], merged tokens),
        with the ``nn.MultiheadAttention`` modules; for inspection (``intermediates=True``) and as
        the reference of :meth:`_coarse_features`.  Returns f (B, M, d), enhanced, merged."""
        enhanced: list[list[torch.Tensor]] = []
        for g in range(self.num_stages):
            tokens = []
            for v in range(self.num_views):
                z = self.compressors[g][v](inputs[g][:, v])
                if present is not None:
                    z = torch.where(present[:, v].view(-1, 1, 1), z, z.new_zeros(()))
                tokens.append(z)
            tokens.append(tab)
            enhanced.append([self._enhance(g, m, tokens, present) for m in range(self.num_modalities)])
        merged = [torch.cat([enhanced[g][m] for g in range(self.num_stages)], dim=1)
                  for m in range(self.num_modalities)]
        features = torch.stack([self.merge[m](merged[m]).mean(dim=1) for m in range(self.num_modalities)], dim=1)
        return features, enhanced, merged

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
            has_key = ~hidden.all(dim=1)
            mask = hidden & has_key.unsqueeze(1)
        attended, _ = self.attention[g][m](tokens[m], keys, keys, key_padding_mask=mask, need_weights=False)
        if has_key is not None:
            attended = attended * has_key.to(attended.dtype).view(-1, 1, 1)
        return torch.cat([tokens[m], attended], dim=1)

    def forward_features(self, batch: Batch, use_mask: bool = True,
                         intermediates: bool = False) -> dict[str, Any]:
        """Per-modality vectors f (B, M, d) before the absent fill, presence (B, M), logits (B, K).

        ``use_mask=False`` is the plain all-present implementation (no key masks, no absent
        fill); with an all-ones mask the masked path must reproduce it bit for bit (a test).
        ``intermediates=True`` computes the coarse stage explicitly (:meth:`_coarse_explicit`)
        and also returns its ``enhanced`` and ``merged`` tokens and ``filled``; otherwise the
        re-associated :meth:`_coarse_features` computes the same f (float32 rounding aside).
        In both, f of an absent (sample, modality) pair is a finite placeholder."""
        b = len(batch)
        if use_mask:
            present = self.modality_presence(batch)
        else:
            present = torch.ones(b, self.num_modalities, dtype=torch.bool, device=batch.tabular.device)
        inputs = self._stage_inputs(batch, present)
        tab = self._tabular_tokens(batch, present[:, -1])
        mask = present if use_mask else None
        if intermediates:
            features, enhanced, merged = self._coarse_explicit(inputs, tab, mask)
        else:
            features = self._coarse_features(inputs, tab, mask)
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
        if self.encoder_config.image.uses_pretrained:
            groups = [{"params": backbone, "lr": settings.lr * o.backbone_lr_scale},
                      {"params": rest, "lr": settings.lr}]
        else:
            groups = [{"params": backbone + rest, "lr": settings.lr}]
        # The fused kernel: the same Adam update in one pass over all parameters (the per-tensor
        # implementation costs ~3x more at CFCML's 0.8 M parameters on one CPU thread).
        fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
        optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
        self.schedule = self.schedule_for(settings.epochs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule.factor)
        return optimizer, scheduler

    def schedule_for(self, budget: int) -> WarmupStepSchedule:
        """The warm-up + step-decay schedule of a ``budget``-epoch run (fractions of the budget)."""
        o = self.options
        return WarmupStepSchedule.for_budget(budget, o.warmup_fraction, o.decay_fraction, o.decay_factor,
                                             o.warmup_from_zero, o.warmup_epochs, o.decay_every, self.registry_name)

    @classmethod
    def minimum_epochs(cls, options: CFCMLOptions) -> tuple[int, str]:
        minimum = WarmupStepSchedule.minimum_budget(options.warmup_fraction, options.warmup_epochs)
        return minimum, "a warm-up of at least one epoch and one epoch after it"

    def lr_factor(self, epoch: int, budget: int = 50) -> float:
        """Multiplier of the base lr in epoch ``epoch`` (0-based) of a ``budget``-epoch run."""
        return self.schedule_for(budget).factor(epoch)


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
