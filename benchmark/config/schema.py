"""The validated, frozen configuration of one benchmark invocation (built by ``loading``).

Every section is a frozen dataclass validated by :func:`core.options.from_mapping` at the edge
(YAML + CLI); the rest of the harness receives typed objects.  Method options are stored as each
method's validated ``Options`` instance (code defaults filled in), so a run's identity is what the
method will actually use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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

    def validate(self, where: str) -> None:
        if not self.rates:
            raise ConfigError(f"{where}.rates: at least one rate is needed")
        for rate in self.rates:  # MissingSpec checks pattern, protocol and the range
            MissingSpec(self.pattern, rate, self.protocol, self.image_share)  # type: ignore[arg-type]
        if len(set(self.rates)) != len(self.rates):
            raise ConfigError(f"{where}.rates: duplicate rate in {list(self.rates)}")

    def specs(self) -> list[MissingSpec]:
        return [MissingSpec(self.pattern, r, self.protocol, self.image_share)  # type: ignore[arg-type]
                for r in self.rates]


@dataclass(frozen=True)
class TrainingConfig:
    """The shared budget and optimiser settings; ``device``/``threads``/``eval_batch_size`` say where
    and how fast a run goes, never what it computes, so they are not part of a run's identity."""

    epochs: int = 10
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
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")


@dataclass(frozen=True)
class ExecutionSection:
    """How cells are executed; never part of a run's identity."""

    executor: str = "local"          # local | ray
    workers: int = 1                 # ray: parallel tasks on a local Ray instance
    ray_address: str | None = None   # ray: join an existing cluster ("auto" = one from `ray start`)
    retries: int = 2                 # ray: retries of a failed task before it is reported
    gpus_per_task: float = 0.0       # ray: GPUs declared per task
    threads_per_worker: int = 1      # ray: torch threads per task

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
    missing: MissingSection = field(default_factory=MissingSection)
    seeds: tuple[int, ...] = (0, 1, 2)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
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

    def options_for(self, method: str) -> Any:
        """The method's validated ``Options`` instance (set by ``load_config``)."""
        return self.method_options[method]
