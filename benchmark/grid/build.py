"""Expanding a validated config into its grid of RunSpecs (missing specs x seeds x methods)."""
from __future__ import annotations

from typing import Any, Mapping

from benchmark.config.schema import BenchmarkConfig, TrainingConfig
from benchmark.grid.fingerprint import run_fingerprint
from benchmark.grid.spec import ORACLE_METHOD, RunSpec
from core.masks import MissingSpec


def cell_spec(cfg: BenchmarkConfig, method: str, missing: MissingSpec, seed: int, options: Any = None,
              training: TrainingConfig | None = None, tuned: Mapping[str, Any] | None = None) -> RunSpec:
    """The RunSpec of one cell; ``options``/``training`` default to the config's (tuning overrides them)."""
    reference = method == ORACLE_METHOD
    return RunSpec(method=method, dataset=cfg.dataset, missing=missing, seed=int(seed),
                   training=training or (cfg.training if reference else cfg.training_for(method)), encoders=cfg.encoders,
                   options=None if reference else (options if options is not None else cfg.options_for(method)),
                   tuned=tuned, fingerprint=run_fingerprint(None if reference else method, cfg.dataset, cfg.encoders),
                   evaluation=cfg.evaluation)


def build_grid(cfg: BenchmarkConfig, with_oracle: bool) -> list[RunSpec]:
    """Every (missing spec, seed, method) cell of a config, in execution order: the methods of one
    (missing spec, seed) group run together, so their data are prepared once."""
    methods = list(cfg.methods) + ([ORACLE_METHOD] if with_oracle else [])
    return [cell_spec(cfg, method, missing, seed)
            for missing in cfg.missing.specs() for seed in cfg.seeds for method in methods]
