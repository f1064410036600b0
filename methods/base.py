"""The method contract every fusion method implements (one file per method in ``methods/``).

The training loop (``benchmark.training.loop``) only ever calls what is defined here, so a method
with extra stages (contrastive pre-training), epoch hooks (memory banks, schedules) or a special
sampler (class-balanced batches for prototype losses) declares them by overriding a hook — the
harness never branches on a method's name.

A method receives a :class:`~core.batch.Batch` whose absent modalities are already zeros and
whose ``present`` (B, 2) says which modality each sample has.  It must never depend on the
content of an absent modality; the conformance suite (``tests/test_method_conformance.py``)
checks this for every registered method
(``benchmark.checks.methods``, importable: run it on your own class).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.batch import Batch
from core.contract import DatasetInfo
from core.errors import ConfigError
from core.encoders import EncoderConfig, ImageEncoder, TabularEncoder
from core.options import from_mapping, to_mapping


@dataclass(frozen=True)
class Stage:
    """A phase of training. The loop runs ``epochs`` epochs of it, in order."""

    name: str = "supervised"
    epochs: int = 1
    full_batch: bool = False    # the whole training split arrives as one batch (sklearn models)
    select_model: bool = True   # validation-based model selection runs after each epoch


@dataclass(frozen=True)
class SelectionGroup:
    """Parameters that are model-selected on their own, on validation data of their modalities.

    ``modalities`` is a (image, tabular) availability filter applied on top of the validation
    mask (never on top of data the mask removed); the group's score is the primary metric of the
    method's prediction under it, on the validation rows that keep one of those modalities.
    ``parameter_prefixes`` name the ``state_dict`` keys whose best-epoch values are kept.
    """

    modalities: tuple[bool, bool]
    parameter_prefixes: tuple[str, ...]


def budget_share(fraction: float, budget: int, minimum: int = 1) -> int:
    """``round(fraction * budget)``, at least ``minimum``: an epoch count that is a *share* of the
    shared budget, so a stage or schedule means the same at 10 epochs as at 50."""
    return max(int(minimum), int(math.floor(float(fraction) * int(budget) + 0.5)))


def minimum_stage_budget(fraction: float, fixed_epochs: int | None = None) -> int:
    """Fewest epochs in which a first stage of ``fraction`` of the budget (at least one epoch, or
    exactly ``fixed_epochs``) still leaves one epoch after it: the minimum a warm-up or a
    pre-training stage needs to keep its meaning."""
    if fixed_epochs is not None:
        return fixed_epochs + 1
    budget = 2
    while budget_share(fraction, budget) >= budget:
        budget += 1
    return budget


class BudgetError(ConfigError):
    """The shared epoch budget is too small for a method's defining stage or schedule."""


@dataclass(frozen=True)
class WarmupStepSchedule:
    """Linear warm-up over ``warmup`` epochs, then x ``gamma`` every ``step`` epochs (per epoch).

    The schedule of CFCML's code (and CMML's, which follows it): upstream 5-epoch warm-up and
    x0.8 every 5 epochs of a 50-epoch run.  :meth:`for_budget` expresses both as fractions of the
    budget (0.1 and 0.1 by default), or takes the upstream absolute epochs (paper presets).
    """

    warmup: int
    step: int
    gamma: float
    from_zero: bool = False   # upstream: epoch e of the warm-up runs at lr * e / warmup (first at 0)

    def factor(self, epoch: int) -> float:
        """Multiplier of the base lr in epoch ``epoch`` (0-based)."""
        if epoch < self.warmup:
            return (epoch if self.from_zero else epoch + 1) / self.warmup
        return self.gamma ** ((epoch - self.warmup) // self.step)

    @staticmethod
    def minimum_budget(warmup_fraction: float, warmup_epochs: int | None) -> int:
        """Fewest epochs with a warm-up of at least one epoch *and* one epoch after it."""
        return minimum_stage_budget(warmup_fraction, warmup_epochs)

    @classmethod
    def for_budget(cls, budget: int, warmup_fraction: float, step_fraction: float, gamma: float,
                   from_zero: bool = False, warmup_epochs: int | None = None,
                   step_epochs: int | None = None, method: str = "") -> "WarmupStepSchedule":
        warmup = warmup_epochs if warmup_epochs is not None else budget_share(warmup_fraction, budget)
        step = step_epochs if step_epochs is not None else budget_share(step_fraction, budget)
        if warmup >= budget:
            minimum = cls.minimum_budget(warmup_fraction, warmup_epochs)
            raise BudgetError(f"method '{method}': its warm-up of {warmup} epochs fills the budget of {budget} "
                              f"epochs; it needs max_epochs >= {minimum}")
        return cls(warmup, step, gamma, from_zero)


@dataclass(frozen=True)
class NoOptions:
    """For methods without options."""


@dataclass(frozen=True)
class OptimizerSettings:
    """The shared budget's optimiser settings, handed to ``configure_optimizer``."""

    lr: float
    weight_decay: float
    epochs: int


class FusionMethod(nn.Module):
    """Base class: an ``nn.Module`` with a loss for a training step and class probabilities.

    Subclasses set ``display_name`` and, if they have options, an ``Options`` dataclass; the
    options are validated once here (unknown key -> error naming it).
    """

    registry_name: ClassVar[str]
    display_name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    # Optuna search space for the tuning issue: name -> {"type": "float"|"int"|"categorical", ...}
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, info: DatasetInfo, encoders: EncoderConfig, options: Any = None, **kwargs: Any) -> None:
        """``options``: an already validated ``Options`` instance (the harness validates once, when it
        loads the config); otherwise the keyword options are validated here."""
        super().__init__()
        self.info = info
        self.encoder_config = encoders
        if isinstance(options, self.Options) and not kwargs:
            self.options = options
        else:
            given = dict(options or {}) if not isinstance(options, self.Options) else to_mapping(options)
            self.options = from_mapping(self.Options, {**given, **kwargs}, f"method '{self.registry_name}' options")

    # -- shared building blocks ------------------------------------------------------------
    def build_image_encoder(self) -> ImageEncoder:
        return ImageEncoder(self.encoder_config.image, self.info.image_channels, self.info.views,
                            self.info.image_shape)

    def build_tabular_encoder(self) -> TabularEncoder:
        return TabularEncoder(self.encoder_config.tabular, self.info.tabular_dim)

    @property
    def multilabel(self) -> bool:
        return self.info.task == "multilabel"

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                            rows: torch.Tensor | None = None) -> torch.Tensor:
        """CE (binary/multiclass) or BCE (multilabel), optionally on a subset of rows."""
        if rows is not None:
            logits, labels = logits[rows], labels[rows]
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    # -- the contract -------------------------------------------------------------------------
    @classmethod
    def minimum_epochs(cls, options: Any) -> tuple[int, str]:
        """The smallest shared budget (``max_epochs``) the method's defining stages fit in, and why;
        the config loader rejects a smaller budget with this reason (never a silent skip)."""
        return 1, "one supervised epoch"

    def stages(self, epochs: int) -> list[Stage]:
        """Training phases within the shared epoch budget. Default: one supervised stage."""
        return [Stage("supervised", epochs)]

    def train_batches(self, labels: np.ndarray, batch_size: int,
                      rng: np.random.Generator) -> Iterator[np.ndarray] | None:
        """Index batches for one epoch (e.g. class-balanced); None = shuffled, ceil(N/B) batches."""
        return None

    def configure_optimizer(self, settings: OptimizerSettings) -> tuple[torch.optim.Optimizer | None, Any]:
        """Optimiser and per-epoch LR scheduler (or None). Default: AdamW, constant LR."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None, None
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay), None

    def training_step(self, batch: Batch, stage: Stage) -> dict[str, torch.Tensor]:
        """Losses for one batch; must contain ``"loss"`` (other entries are logged)."""
        raise NotImplementedError

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """(B, K) class probabilities (softmax; sigmoid per label for multilabel)."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, stage: Stage) -> None:
        """Hook after each training epoch (schedules, memory banks)."""

    def fit_on_validation(self, batches: Iterable[Batch]) -> None:
        """Post-hoc fitting after model selection (e.g. calibration); default: nothing.

        Receives the validation split under its mask, in evaluation batches (masked data
        removed, as in training); the test split never reaches it.
        """

    def selection_groups(self) -> dict[str, SelectionGroup]:
        """Independently selected parameter groups (e.g. the branches of an ensemble).

        Default: none, the whole model is selected on the validation score of its prediction.
        With groups, each group keeps the state of its own best validation epoch; parameters in
        no group keep the jointly selected state.
        """
        return {}


class UnimodalFallback(nn.Module):
    """Learned logits for samples that lack the modality a unimodal head needs.

    Trained by the same loss on exactly those samples, it converges to their label prior: a
    unimodal model can say nothing more about a sample whose modality is absent.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_classes))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.logits.unsqueeze(0).expand(batch_size, -1)
