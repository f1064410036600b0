"""The validated, frozen configuration of one benchmark invocation (built by ``loading``).

Every section is a frozen dataclass validated by :func:`core.options.from_mapping` at the edge
(YAML + CLI); the rest of the harness receives typed objects.  Method options are stored as each
method's validated ``Options`` instance (code defaults filled in), so a run's identity is what the
method will actually use.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from core.encoders import EncoderConfig
from core.errors import ConfigError
from core.masks import DEFAULT_RATES, MissingSpec


@dataclass(frozen=True)
class DatasetSection:
    name: str = "synthetic"
    root: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MissingSection:
    pattern: str = "mixed"
    protocol: str = "both"
    rates: tuple[float, ...] = DEFAULT_RATES
    image_share: float = 0.5
    # Missingness mechanism (scenarios spec A): train/val masks use ``mechanism`` (``train_mechanism``
    # is its alias), test masks ``test_mechanism`` (None = the same: no mechanism shift).
    mechanism: str = "mcar"
    strength: float = 1.0
    mar_column: str | None = None
    train_mechanism: str | None = None
    test_mechanism: str | None = None

    def validate(self, where: str) -> None:
        if not self.rates:
            raise ConfigError(f"{where}.rates: at least one rate is needed")
        if self.train_mechanism is not None and self.mechanism not in ("mcar", self.train_mechanism):
            raise ConfigError(f"{where}.train_mechanism: {self.train_mechanism!r} contradicts "
                              f"{where}.mechanism {self.mechanism!r} (it is an alias; give one of them)")
        self.specs()  # building the MissingSpecs checks pattern, protocol, mechanisms and the ranges
        if len(set(self.rates)) != len(self.rates):
            raise ConfigError(f"{where}.rates: duplicate rate in {list(self.rates)}")

    def specs(self) -> list[MissingSpec]:
        mechanism = self.train_mechanism if self.train_mechanism is not None else self.mechanism
        return [MissingSpec(self.pattern, r, self.protocol, self.image_share, mechanism,  # type: ignore[arg-type]
                            self.strength, self.mar_column, self.test_mechanism)
                for r in self.rates]


@dataclass(frozen=True)
class TrainingConfig:
    """The shared budget and optimiser settings; ``device``/``threads``/``eval_batch_size`` say where
    and how fast a run goes, never what it computes, so they are not part of a run's identity.

    The budget is ``max_epochs`` with early stopping, the same for every method: training stops
    once the validation primary metric has not improved for ``patience`` epochs (never before
    ``min_epochs``, and only in a method's last stage, so no stage is cut short); the selected
    model is the best validation epoch.  A method's epoch schedule (warm-up, decay, contrastive
    stage) is a fraction of ``max_epochs``, so it means the same at every budget.  ``patience: 0``
    turns early stopping off (every run trains ``max_epochs``).  ``lr``/``weight_decay`` are the
    shared defaults; a method whose recipe gives its own learning rate declares it in
    ``configs/methods/<name>.yaml`` under ``training:`` (``BenchmarkConfig.training_for``).
    """

    max_epochs: int = 10
    patience: int = 5
    min_epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eval_batch_size: int = 500
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0        # torch intra-op threads; 0 = torch's default
    grad_clip: float = 0.0  # 0 = off
    # auto = bf16 on CUDA, fp32 on CPU (benchmark.training.precision); part of the identity as given
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def validate(self, where: str) -> None:
        for name in ("max_epochs", "min_epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ConfigError(f"{where}.patience: must be >= 0 (0 = no early stopping), got {self.patience}")
        if self.min_epochs > self.max_epochs:
            raise ConfigError(f"{where}.min_epochs: {self.min_epochs} is above max_epochs ({self.max_epochs})")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")


# What a method's recipe may set for itself; everything else in TrainingConfig is the shared budget.
METHOD_TRAINING_KEYS: tuple[str, ...] = ("lr", "weight_decay")


@dataclass(frozen=True)
class EvaluationConfig:
    """Post-hoc steps applied identically to every trained method before it is scored, fitted on
    the validation split only (``core.calibration``).  Part of a run's identity: they change the
    probabilities that are scored.  Default ``affine``: one validation-fitted temperature and
    class bias (Platt scaling, binary) for every method is the fair choice — methods then differ by
    what they rank, not by how their training happened to scale or shift the probabilities
    (``none`` scores raw outputs, which rewards methods whose loss calibrates by accident;
    ``temperature`` keeps a head's decision threshold, so a head selected while biased to one class
    is scored on that bias; ``pattern_temperature`` / ``pattern_affine`` fit one map per
    availability pattern, see ``core.calibration``)."""

    calibration: Literal["none", "temperature", "pattern_temperature", "affine", "pattern_affine"] = "affine"


@dataclass(frozen=True)
class ExecutionSection:
    """How cells are executed; never part of a run's identity."""

    executor: str = "local"          # local | ray
    workers: int = 1                 # cells at once: local worker processes on one device, or Ray tasks
    ray_address: str | None = None   # ray: join an existing cluster ("auto" = one from `ray start`)
    retries: int = 2                 # ray: retries of a failed task; both: of a cell hit by a server restart
    gpus_per_task: float = 0.0       # ray: GPUs declared per task
    threads_per_worker: int = 1      # torch threads per Ray task / local worker (workers > 1)

    def validate(self, where: str) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"{where}.executor: {self.executor!r} is not one of 'local', 'ray'")
        if self.workers < 1 or self.retries < 0 or self.threads_per_worker < 1:
            raise ConfigError(f"{where}: workers and threads_per_worker must be >= 1, retries >= 0")


@dataclass(frozen=True)
class BenchmarkConfig:
    dataset: DatasetSection = field(default_factory=DatasetSection)
    methods: tuple[str, ...] = ("tabular_sklearn", "image_only", "tabular_only", "early_fusion", "late_fusion")
    method_options: dict = field(default_factory=dict)   # method -> its validated Options instance
    # method -> its recipe's optimiser values (``lr``, ``weight_decay``) from configs/methods/<m>.yaml
    # ``training:``; the budget itself (epochs, patience, batch size) is never per method.
    method_training: dict = field(default_factory=dict)
    missing: MissingSection = field(default_factory=MissingSection)
    seeds: tuple[int, ...] = (0, 1, 2)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    results_dir: str = "results"
    tracking_uri: str | None = None
    execution: ExecutionSection = field(default_factory=ExecutionSection)

    def validate(self, where: str) -> None:
        if not self.methods:
            raise ConfigError(f"{where}.methods: at least one method is needed")
        if not self.seeds:
            raise ConfigError(f"{where}.seeds: at least one seed is needed")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"{where}.methods: duplicate method in {list(self.methods)}")

    def training_for(self, method: str) -> TrainingConfig:
        """The shared training config with the method's recipe values (``lr``, ``weight_decay``)."""
        recipe = self.method_training.get(method) or {}
        return replace(self.training, **recipe) if recipe else self.training

    def options_for(self, method: str) -> Any:
        """The method's validated ``Options`` instance (set by ``load_config``)."""
        return self.method_options[method]
