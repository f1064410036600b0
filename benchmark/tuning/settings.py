"""``configs/tune.yaml``: the one budget every method gets (trials, seeds, sampler, pruner) and
the shared search space (``training.<field>``), validated when the file is loaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from benchmark.config.loading import CONFIG_DIR, read_yaml
from benchmark.config.schema import BenchmarkConfig, TrainingConfig
from benchmark.tuning.space import ParamSpec, checked_param, method_space
from core.errors import ConfigError
from core.options import from_mapping, to_mapping

TUNE_CONFIG = CONFIG_DIR / "tune.yaml"
# TrainingConfig fields a shared space may tune.  Not epochs: the epoch budget is what is shared.
TUNABLE_TRAINING = ("lr", "batch_size", "weight_decay", "grad_clip")


@dataclass(frozen=True)
class SamplerSection:
    type: Literal["tpe"] = "tpe"
    seed: int = 0
    n_startup_trials: int = 5

    def validate(self, where: str) -> None:
        if self.n_startup_trials < 0:
            raise ConfigError(f"{where}.n_startup_trials: must be >= 0, got {self.n_startup_trials}")


@dataclass(frozen=True)
class PrunerSection:
    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = 3
    n_warmup_steps: int = 1
    min_resource: int = 1
    reduction_factor: int = 3

    def validate(self, where: str) -> None:
        for name in ("n_startup_trials", "n_warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        if self.min_resource < 1:
            raise ConfigError(f"{where}.min_resource: must be >= 1, got {self.min_resource}")
        if self.reduction_factor < 2:
            raise ConfigError(f"{where}.reduction_factor: must be >= 2, got {self.reduction_factor}")


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 20
    tuning_seeds: tuple[int, ...] = (100, 101)
    missing_rate: float | None = 0.5
    enqueue_defaults: bool = True
    shared_space: dict = field(default_factory=dict)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    pruner: PrunerSection = field(default_factory=PrunerSection)

    def validate(self, where: str) -> None:
        if self.trials < 1:
            raise ConfigError(f"{where}.trials: must be >= 1, got {self.trials}")
        if not self.tuning_seeds:
            raise ConfigError(f"{where}.tuning_seeds: at least one seed is needed")
        if len(set(self.tuning_seeds)) != len(self.tuning_seeds):
            raise ConfigError(f"{where}.tuning_seeds: duplicate seed in {list(self.tuning_seeds)}")
        if self.missing_rate is not None and not 0.0 <= self.missing_rate < 1.0:
            raise ConfigError(f"{where}.missing_rate: {self.missing_rate} is outside [0, 1)")


def load_tune_config(path: str | Path | None = None, trials: int | None = None,
                     tuning_seeds: Sequence[int] | None = None) -> TuneConfig:
    """Read ``configs/tune.yaml`` (or ``path``); CLI values override it.  Validates the shared space."""
    path = Path(path) if path else TUNE_CONFIG
    raw = read_yaml(path)
    if trials is not None:
        raw["trials"] = trials
    if tuning_seeds is not None:
        raw["tuning_seeds"] = list(tuning_seeds)
    tcfg = from_mapping(TuneConfig, raw, str(path))
    shared_space(tcfg, where=str(path))  # fail at load, not after the first study
    return tcfg


def shared_space(tcfg: TuneConfig, training: TrainingConfig | None = None,
                 where: str = "configs/tune.yaml") -> dict[str, ParamSpec]:
    """The space every method shares (``training.<field>``), checked against TrainingConfig."""
    base: Mapping[str, Any] = to_mapping(training if training is not None else TrainingConfig())
    out: dict[str, ParamSpec] = {}
    for name, spec in (tcfg.shared_space or {}).items():
        place = f"{where}: shared_space.{name}"
        section, _, key = str(name).partition(".")
        if section != "training" or key not in TUNABLE_TRAINING:
            raise ConfigError(f"{place}: unknown shared parameter '{name}'; known: "
                              + ", ".join(f"training.{k}" for k in TUNABLE_TRAINING)
                              + " (the epoch budget is shared, not tuned)")
        out[name] = checked_param(name, spec, place, TrainingConfig, base, place, f"training.{key}")
    return out


def study_space(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str) -> dict[str, ParamSpec]:
    """What one method's study searches: its own space plus the shared one."""
    return {**method_space(method, to_mapping(cfg.options_for(method))), **shared_space(tcfg, cfg.training)}
