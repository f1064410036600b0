"""Modality-dropout contrastive fusion with learnable modality tokens (``mdc``).

Gu, Saito, Ma, "Learning Contrastive Multimodal Fusion with Improved Modality Dropout for Disease
Detection and Prediction", MICCAI 2025 (arXiv 2509.18284); spec: ``specs/modality_dropout.md``.
The authors released only the fusion head (``networks/tnf.py``) and the losses
(``losses/contrastive_loss.py``); everything else is our reading and is an option below.

Why this method is robust to a missing modality: a missing embedding is replaced by a learnable
*modality token*, and one shared fusion head is trained at every step on every input combination
of every sample (both; image + tabular token; image token + tabular), so there is no dropout
probability to tune and the head has seen every inference-time situation.  A contrastive stage
aligns the image-only, tabular-only and fused views of the same patient.

Exact (follows the released code)
  * tokens ``t_a`` (image, C_a) and ``t_b`` (tabular, C_b), zero-initialised ``nn.Parameter``;
    ``x_m = f_m`` if modality m is present, else ``t_m`` (``mode: replace``) or ``x_m = t_m + f_m``
    / ``t_m`` (``mode: add``, the release's ``use_token_addition``);
  * fusion head, H = round((C_a + C_b) / 2): ``u = cat(LN_a(x_a), LN_b(x_b))``,
    ``h = Linear(Dropout_p(ReLU(LN(u))))``, ``logits = Linear(Dropout_q(LN_H(h)))``, p = q = 0.1;
  * contrastive projection: the last Linear is replaced by Linear(H, H) -> Linear(H, 128) -> L2
    normalisation, LN_H and Dropout_q stay in front (the release's ``to_contrastive(mlp=True)``);
  * InfoNCE with a learnable log-scale initialised to ln 10, target = same index (``criterion:
    ce``), or the sigmoid form with a learnable bias initialised to -10 (``criterion: bce``,
    mean over all logits as in the release).

Inferred (options, documented in :class:`MDCOptions`)
  * classification loss: equal-weight sum of the per-branch CE (``branch_weights``), each branch
    averaged over the samples that truly have the modalities it uses (fusion: both; image branch:
    image; tabular branch: tabular);
  * contrastive pair set (``contrastive: fused``): NCE(a,b)+NCE(b,a)+NCE(f,a)+NCE(a,f)+NCE(f,b)+
    NCE(b,f) on samples with both modalities; ``unimodal`` keeps only the (a,b) pairs;
    one logit scale shared by all pairs;
  * schedule (``schedule: two_stage``): contrastive pre-training for ``pretrain_fraction`` of the
    shared epoch budget (or ``pretrain_epochs``), then supervised training for the rest with a
    fresh classifier (the classifier Linear exists from the start but receives no gradient in
    stage 1, so it is still at its initialisation: equivalent to the release's weight-loading
    helper, which drops only the projection).  ``schedule: joint`` trains L_cls + alpha * L_con.
    Model selection only runs in the supervised stage;
  * tabular encoder: the harness's shared encoder (fair comparison) or, with
    ``tabular_encoder: ft_transformer``, the paper's FT-Transformer (dim 192, 3 layers, CLS output;
    built from ``torch.nn.TransformerEncoderLayer`` with GELU instead of ReGLU and one dropout rate:
    an adaptation);
  * inference: per sample the branch matching what is present (``test_time: select``) or, with
    both present, the mean of the three branches' probabilities (``test_time: average``);
  * optimiser: the harness's shared AdamW (same lr / weight decay as every method, applied to the
    tokens and the logit scale too); the paper's optimiser is not published.

Note: with ``mode: add`` a token is part of every input of its modality, so it receives gradient
from every branch; "gradient only where the modality is replaced" holds for ``mode: replace``.

Deviations from the release, on purpose
  * the logit scale is clamped at 100 (CLIP) before each use; the release leaves it unclamped;
  * the memory bank enqueues the batch's keys *after* the loss (the release enqueues first, so
    each query meets its own key as a negative) and only filled slots are used as negatives (the
    release starts from unnormalised random vectors);
  * the release's classification-loss wrapper is broken; torch's own losses are used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.encoders import EncoderConfig, encode_present
from core.errors import ConfigError
from methods import register_method
from methods.base import BudgetError, FusionMethod, Stage, budget_share, minimum_stage_budget

BRANCHES = ("fusion", "image", "tabular")
_HEAD_SPACE = {
    "options.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "options.classifier_dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
_PRETRAIN_SPACE = {"options.pretrain_fraction": {"type": "float", "low": 0.1, "high": 0.6}}


@dataclass(frozen=True)
class MDCOptions:
    """Options of ``mdc``; (exact) = released code, (inferred) = our reading of the paper."""

    learnable: bool = True            # (exact) learnable tokens; false = zero-fill baseline (fixed zeros)
    mode: Literal["replace", "add"] = "replace"  # (exact) add: x = t + f when present
    token_init_std: float = 0.0       # 0 = zero init (exact); >0 = small N(0, std) init (spec pitfall)
    norm_eps: float = 1e-5            # LayerNorm eps; a zero token's LN gradient is ~1/sqrt(eps)
    dropout: float = 0.1              # (exact) p, fusion MLP
    classifier_dropout: float = 0.1   # (exact) q, in front of classifier/projection
    branch_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (inferred) fusion, image, tabular CE
    contrastive: Literal["none", "unimodal", "fused"] = "fused"  # (inferred) pair set; none = no L_con
    schedule: Literal["two_stage", "joint"] = "two_stage"  # (inferred) see module docstring
    pretrain_fraction: float = 0.3    # (inferred) share of the epoch budget for stage 1
    pretrain_epochs: int | None = None  # overrides pretrain_fraction when set
    alpha: float = 1.0                # (inferred) weight of L_con with schedule: joint
    proj_dim: int = 128               # (exact)
    criterion: Literal["ce", "bce"] = "ce"  # (exact) InfoNCE (ce) or sigmoid (bce) contrastive loss
    init_scale: float = 10.0          # (exact) exp(log_scale) at init: temperature 0.1
    max_scale: float = 100.0          # CLIP's clamp; the release has none
    bce_bias_init: float = -10.0      # (exact) for criterion: bce
    memory_size: int = 0              # FIFO bank of detached keys as extra negatives; 0 = off
    test_time: Literal["select", "average"] = "select"  # branch choice at inference
    tabular_encoder: Literal["shared", "ft_transformer"] = "shared"
    ft_dim: int = 192                 # FT-Transformer width (paper)
    ft_layers: int = 3                # (paper)
    ft_heads: int = 8
    ft_dropout: float = 0.1

    def validate(self, where: str) -> None:
        for name in ("dropout", "classifier_dropout", "ft_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{where}.{name}: must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.pretrain_fraction < 1.0:  # 0 would silently drop the contrastive stage
            raise ConfigError(f"{where}.pretrain_fraction: must be in (0, 1), got {self.pretrain_fraction} "
                              "(schedule: joint or contrastive: none train without a contrastive stage)")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 0:
            raise ConfigError(f"{where}.pretrain_epochs: must be >= 0, got {self.pretrain_epochs}")
        if len(self.branch_weights) != 3:
            raise ConfigError(f"{where}.branch_weights: need 3 weights (fusion, image, tabular), "
                              f"got {len(self.branch_weights)}")
        if any(w < 0 for w in self.branch_weights) or sum(self.branch_weights) <= 0:
            raise ConfigError(f"{where}.branch_weights: need three weights >= 0 with a positive sum, "
                              f"got {self.branch_weights}")
        positive = {"norm_eps": self.norm_eps, "proj_dim": self.proj_dim, "init_scale": self.init_scale,
                    "ft_dim": self.ft_dim, "ft_layers": self.ft_layers, "ft_heads": self.ft_heads}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{where}.{name}: must be > 0, got {value}")
        if self.max_scale < self.init_scale:
            raise ConfigError(f"{where}.max_scale: must be >= init_scale ({self.init_scale}), got {self.max_scale}")
        if self.token_init_std < 0:
            raise ConfigError(f"{where}.token_init_std: must be >= 0, got {self.token_init_std}")
        if not self.learnable and self.token_init_std > 0:
            raise ConfigError(f"{where}.token_init_std: the zero-fill baseline (learnable: false) has fixed "
                              f"zero tokens; got token_init_std={self.token_init_std}")
        if self.alpha < 0:
            raise ConfigError(f"{where}.alpha: must be >= 0, got {self.alpha}")
        if self.memory_size < 0:
            raise ConfigError(f"{where}.memory_size: must be >= 0, got {self.memory_size}")
        if self.ft_dim % self.ft_heads:
            raise ConfigError(f"{where}.ft_heads: must divide ft_dim ({self.ft_dim}), got {self.ft_heads}")


class ContrastiveLoss(nn.Module):
    """InfoNCE / sigmoid contrastive loss with a learnable log-scale (released loss, fixed).

    ``forward(query, key, memory)``: query i's positive is key i; the other keys and every
    memory row are negatives.  Inputs are expected L2-normalised (cosine similarities).
    """

    def __init__(self, criterion: str = "ce", init_scale: float = 10.0, max_scale: float = 100.0,
                 bias_init: float = -10.0) -> None:
        super().__init__()
        self.criterion = criterion
        self.max_log_scale = math.log(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        if criterion == "bce":
            self.bias = nn.Parameter(torch.tensor(float(bias_init)))
        else:
            self.register_buffer("bias", torch.tensor(0.0))

    def clamp_(self) -> None:
        """CLIP's clamp, on the parameter itself so that the gradient can pull it back down."""
        with torch.no_grad():
            self.log_scale.clamp_(max=self.max_log_scale)

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                memory: torch.Tensor | None = None) -> torch.Tensor:
        b = query.shape[0]
        if b == 0:
            return query.sum() * 0.0
        logits = query @ key.t()
        if memory is not None and memory.shape[0]:
            logits = torch.cat([logits, query @ memory.detach().t()], dim=1)
        logits = logits * self.log_scale.exp() + self.bias
        if self.criterion == "ce":
            return F.cross_entropy(logits, torch.arange(b, device=query.device))
        target = torch.zeros_like(logits)
        target[:, :b] = torch.eye(b, dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target)


class MemoryBank(nn.Module):
    """FIFO queue of detached keys; only filled slots are returned (never random placeholders).

    Not part of the state_dict: it is a training-time cache, irrelevant to inference.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("feats", torch.zeros(size, dim), persistent=False)
        self.ptr = 0
        self.count = 0

    def keys(self) -> torch.Tensor:
        # A copy: enqueue() overwrites the buffer in place before backward() needs these values.
        return self.feats[: self.count].clone()

    @torch.no_grad()
    def enqueue(self, x: torch.Tensor) -> None:
        x = x.detach()[-self.size:]  # a batch larger than the bank keeps its last rows
        n = x.shape[0]
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.feats.device)) % self.size
        self.feats.index_copy_(0, slots, x.to(self.feats.dtype))
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.size, self.count + n)


class FTTransformer(nn.Module):
    """FT-Transformer tabular encoder (Gorishniy et al. 2021), CLS-token output.

    One token per raw column from the harness's encoded vector: a column's slice (a z-scored
    value plus its NaN indicator, or a one-hot) goes through its own Linear, which for a one-hot
    is exactly an embedding lookup (unknown level = all zeros = bias only).
    """

    def __init__(self, slices: tuple[tuple[int, int], ...], in_dim: int, dim: int, layers: int,
                 heads: int, dropout: float) -> None:
        super().__init__()
        if not slices:
            slices = tuple((i, i + 1) for i in range(in_dim))
        self.slices = slices
        self.tokenizers = nn.ModuleList(nn.Linear(stop - start, dim) for start, stop in slices)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=int(dim * 4 / 3), dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def net(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([tok(x[:, a:b]) for tok, (a, b) in zip(self.tokenizers, self.slices)], dim=1)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.norm(self.encoder(tokens)[:, 0])

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        if present is None:
            return self.net(x)
        return encode_present(self.net, x, present, self.out_dim)


@register_method("mdc")
class ModalityDropoutContrastive(FusionMethod):
    """Learnable modality tokens + all-combinations supervision + contrastive alignment."""

    display_name = "Modality-dropout contrastive"
    Options = MDCOptions
    search_space = {**_HEAD_SPACE, **_PRETRAIN_SPACE,
                    "options.memory_size": {"type": "categorical", "choices": [0, 256, 1024]}}

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, **options: Any) -> None:
        super().__init__(info, encoders, **options)
        o = self.options
        self.image_encoder = self.build_image_encoder()
        if o.tabular_encoder == "ft_transformer":
            self.tabular_encoder = FTTransformer(info.tabular_column_slices, info.tabular_dim, o.ft_dim,
                                                 o.ft_layers, o.ft_heads, o.ft_dropout)
        else:
            self.tabular_encoder = self.build_tabular_encoder()
        c_a, c_b = self.image_encoder.out_dim, self.tabular_encoder.out_dim
        hidden = round((c_a + c_b) / 2.0)
        self.hidden_dim = hidden

        tokens = [torch.randn(c) * o.token_init_std if o.token_init_std > 0 else torch.zeros(c)
                  for c in (c_a, c_b)]
        if o.learnable:
            self.token_image = nn.Parameter(tokens[0])
            self.token_tabular = nn.Parameter(tokens[1])
        else:  # zero-fill baseline: a buffer can never be updated by the optimiser
            self.register_buffer("token_image", torch.zeros(c_a))
            self.register_buffer("token_tabular", torch.zeros(c_b))

        eps = o.norm_eps
        self.norm_image = nn.LayerNorm(c_a, eps=eps)
        self.norm_tabular = nn.LayerNorm(c_b, eps=eps)
        self.fuse = nn.Sequential(nn.LayerNorm(c_a + c_b, eps=eps), nn.ReLU(), nn.Dropout(o.dropout),
                                  nn.Linear(c_a + c_b, hidden))
        self.head_norm = nn.LayerNorm(hidden, eps=eps)
        self.head_dropout = nn.Dropout(o.classifier_dropout)
        self.classifier = nn.Linear(hidden, info.num_classes)
        self.uses_contrastive = o.contrastive != "none"
        if self.uses_contrastive:
            self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.Linear(hidden, o.proj_dim))
            self.contrastive_loss = ContrastiveLoss(o.criterion, o.init_scale, o.max_scale, o.bce_bias_init)
            self.banks = nn.ModuleDict({name: MemoryBank(o.memory_size, o.proj_dim) for name in BRANCHES}) \
                if o.memory_size > 0 else None

    # -- schedule -------------------------------------------------------------------------------
    @staticmethod
    def has_pretraining(options: MDCOptions) -> bool:
        return options.contrastive != "none" and options.schedule == "two_stage"

    @classmethod
    def minimum_epochs(cls, options: MDCOptions) -> tuple[int, str]:
        """Two-stage: at least one contrastive epoch and one supervised epoch after it."""
        if not cls.has_pretraining(options):
            return 1, "one supervised epoch"
        if options.pretrain_epochs is not None:
            return options.pretrain_epochs + 1, f"pretrain_epochs = {options.pretrain_epochs} plus one supervised epoch"
        return (minimum_stage_budget(options.pretrain_fraction),
                "one contrastive pre-training epoch and one supervised epoch")

    def pretrain_epochs(self, epochs: int) -> int:
        """Stage-1 epochs: ``pretrain_fraction`` of the budget (at least one), or ``pretrain_epochs``;
        a budget that leaves no supervised epoch is an error naming the minimum, never a silent skip."""
        o = self.options
        if not self.has_pretraining(o):
            return 0
        n = o.pretrain_epochs if o.pretrain_epochs is not None else budget_share(o.pretrain_fraction, epochs)
        if n >= epochs:
            minimum, reason = self.minimum_epochs(o)
            raise BudgetError(f"method '{self.registry_name}': a budget of {epochs} epochs leaves no supervised epoch "
                              f"after {n} contrastive epochs; it needs max_epochs >= {minimum} ({reason})")
        return n

    def stages(self, epochs: int) -> list[Stage]:
        """Stage 1 (contrastive, no model selection) + stage 2 (supervised) = the shared budget."""
        n = self.pretrain_epochs(epochs)
        if n == 0:
            return [Stage("supervised", epochs)]
        return [Stage("contrastive", n, select_model=False), Stage("supervised", epochs - n)]

    # -- model ----------------------------------------------------------------------------------
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_a, f_b): exact zeros for absent rows (the encoders only run on present rows)."""
        f_a = self.image_encoder(batch.images, batch.view_present)
        f_b = self.tabular_encoder(batch.tabular, batch.tabular_present)
        return f_a, f_b

    def substitute(self, f_a: torch.Tensor, f_b: torch.Tensor, present: torch.Tensor
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Head inputs (x_a, x_b) of the three branches; a missing modality becomes its token."""
        t_a = self.token_image.unsqueeze(0).expand_as(f_a)
        t_b = self.token_tabular.unsqueeze(0).expand_as(f_b)
        has_a, has_b = present[:, :1], present[:, 1:2]
        if self.options.mode == "add":
            x_a = torch.where(has_a, t_a + f_a, t_a)
            x_b = torch.where(has_b, t_b + f_b, t_b)
        else:
            x_a = torch.where(has_a, f_a, t_a)
            x_b = torch.where(has_b, f_b, t_b)
        return {"fusion": (x_a, x_b), "image": (x_a, t_b), "tabular": (t_a, x_b)}

    def hidden(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Shared trunk up to Dropout_q(LN_H(h)), in front of both classifier and projection."""
        u = torch.cat([self.norm_image(x_a), self.norm_tabular(x_b)], dim=1)
        return self.head_dropout(self.head_norm(self.fuse(u)))

    def head(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """The fusion head g(x_a, x_b) -> logits."""
        return self.classifier(self.hidden(x_a, x_b))

    def project(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """The contrastive head: L2-normalised (B, proj_dim) embeddings."""
        return F.normalize(self.projection(self.hidden(x_a, x_b)), dim=1)

    def _all_branches(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Run ``fn`` on the three branches in one call (3B rows); row-wise ops make it exact."""
        x_a = torch.cat([inputs[k][0] for k in BRANCHES], dim=0)
        x_b = torch.cat([inputs[k][1] for k in BRANCHES], dim=0)
        return dict(zip(BRANCHES, fn(x_a, x_b).chunk(3, dim=0)))

    def branch_logits(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Logits of the fusion, image-only and tabular-only branches for every sample."""
        f_a, f_b = self.encode(batch)
        return self._all_branches(self.head, self.substitute(f_a, f_b, batch.present))

    # -- losses ---------------------------------------------------------------------------------
    def _rows(self, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Samples on which a branch is supervised: those that truly have its modalities."""
        return {"fusion": present[:, 0] & present[:, 1], "image": present[:, 0], "tabular": present[:, 1]}

    def _pairs(self) -> list[tuple[str, str]]:
        if self.options.contrastive == "unimodal":
            return [("image", "tabular"), ("tabular", "image")]
        return [("image", "tabular"), ("tabular", "image"), ("fusion", "image"), ("image", "fusion"),
                ("fusion", "tabular"), ("tabular", "fusion")]

    def contrastive_terms(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]],
                          both: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_con over samples with both modalities; memory rows are negatives, enqueued afterwards."""
        self.contrastive_loss.clamp_()
        rows = torch.nonzero(both, as_tuple=False).flatten()
        sub = {k: (a.index_select(0, rows), b.index_select(0, rows)) for k, (a, b) in inputs.items()}
        z = self._all_branches(self.project, sub)
        total = z["fusion"].sum() * 0.0
        for q, k in self._pairs():
            memory = self.banks[k].keys() if self.banks is not None else None
            total = total + self.contrastive_loss(z[q], z[k], memory)
        if self.banks is not None and self.training:
            for name in BRANCHES:  # after the loss: the batch is never its own negative
                self.banks[name].enqueue(z[name])
        return {"loss_contrastive": total, "scale": self.contrastive_loss.log_scale.detach().exp()}

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        if stage.name not in ("contrastive", "supervised"):
            raise ValueError(f"mdc: unknown stage '{stage.name}' (expected contrastive or supervised)")
        f_a, f_b = self.encode(batch)
        inputs = self.substitute(f_a, f_b, batch.present)
        both = batch.present[:, 0] & batch.present[:, 1]
        if stage.name == "contrastive":
            out = self.contrastive_terms(inputs, both)
            out["loss"] = out["loss_contrastive"]
            return out
        logits = self._all_branches(self.head, inputs)
        rows = self._rows(batch.present)
        out: dict[str, torch.Tensor] = {}
        loss = f_a.sum() * 0.0
        for weight, name in zip(self.options.branch_weights, BRANCHES):
            term = self.classification_loss(logits[name], batch.labels, rows[name])
            out[f"loss_{name}"] = term
            loss = loss + weight * term
        if self.uses_contrastive and self.options.schedule == "joint":
            out.update(self.contrastive_terms(inputs, both))
            loss = loss + self.options.alpha * out["loss_contrastive"]
        out["loss"] = loss
        return out

    # -- inference ------------------------------------------------------------------------------
    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """Per sample the branch matching what is present; optionally average when both are."""
        probs = {k: self.probabilities(v) for k, v in self.branch_logits(batch).items()}
        has_a, has_b = batch.present[:, :1], batch.present[:, 1:2]
        both = has_a & has_b
        fused = probs["fusion"]
        if self.options.test_time == "average":
            fused = (probs["fusion"] + probs["image"] + probs["tabular"]) / 3.0
        return torch.where(both, fused, torch.where(has_a, probs["image"], probs["tabular"]))


# -- the ablation ladder: subclasses that only change option defaults -----------------------------
@dataclass(frozen=True)
class _ZeroTokenOptions(MDCOptions):
    learnable: bool = False
    contrastive: Literal["none", "unimodal", "fused"] = "none"


@dataclass(frozen=True)
class _TokenOptions(MDCOptions):
    contrastive: Literal["none", "unimodal", "fused"] = "none"


@dataclass(frozen=True)
class _UnimodalContrastiveOptions(MDCOptions):
    contrastive: Literal["none", "unimodal", "fused"] = "unimodal"


@register_method("mdc_zero_tokens")
class MDCZeroTokens(ModalityDropoutContrastive):
    """Ladder step 1: zero-filled (fixed) tokens, all-combinations supervision, no contrastive."""

    display_name = "MDC ablation: zero tokens"
    Options = _ZeroTokenOptions
    search_space = dict(_HEAD_SPACE)


@register_method("mdc_tokens")
class MDCTokens(ModalityDropoutContrastive):
    """Ladder step 2: learnable tokens, no contrastive stage."""

    display_name = "MDC ablation: learnable tokens"
    Options = _TokenOptions
    search_space = dict(_HEAD_SPACE)


@register_method("mdc_tokens_unicon")
class MDCTokensUnimodalContrastive(ModalityDropoutContrastive):
    """Ladder step 3: learnable tokens + image/tabular contrastive pre-training."""

    display_name = "MDC ablation: + unimodal contrastive"
    Options = _UnimodalContrastiveOptions
    search_space = {**_HEAD_SPACE, **_PRETRAIN_SPACE}
