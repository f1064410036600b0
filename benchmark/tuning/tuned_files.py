"""Tuned files: written by ``benchmark.tune``, read by ``benchmark.run --tuned``.

``<results>/<dataset>/tuned/<method>.yaml`` holds a study's best parameters and the context they
were tuned under (:func:`benchmark.tuning.identity.tuned_context`).  ``--tuned`` refuses a file
whose context differs from the evaluation's, or whose tuning did not hold out an evaluation seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchmark.config.loading import read_yaml
from benchmark.config.schema import BenchmarkConfig, TrainingConfig
from benchmark.grid.build import cell_spec
from benchmark.grid.spec import RunSpec
from benchmark.tuning.identity import template_cell, tuned_context
from benchmark.tuning.settings import TUNABLE_TRAINING, TuneConfig
from benchmark.tuning.space import resolve_params, split_params
from core.errors import ConfigError
from core.masks import MissingSpec

# 2: the context is a view of the run identity (version 1 files had their own context layout).
TUNED_FILE_VERSION = 2


def tuned_path(results_dir: Path, dataset: str, method: str) -> Path:
    return Path(results_dir) / dataset / "tuned" / f"{method}.yaml"


@dataclass
class StudyResult:
    """A finished study: its best trial and its counts, as the tuned file records them."""

    method: str
    study: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    seconds_per_trial: float
    metric: str
    tuned_file: Path | None


def write_tuned(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: MissingSpec, result: StudyResult,
                storage: str, results_dir: Path) -> Path:
    """Write the study's best parameters with the context of its template cell (atomically)."""
    options, training = split_params(result.best_params)
    payload = {
        "version": TUNED_FILE_VERSION,
        "method": method,
        "dataset": cfg.dataset.name,
        "missing": {"pattern": mspec.pattern, "protocol": mspec.protocol, "rate": float(mspec.rate)},
        "options": options,
        "training": training,
        "objective": f"mean {result.metric} at the selected epoch over the tuning seeds",
        "best_value": result.best_value,
        "best_trial": result.best_trial,
        "trials": result.trials,
        "complete": result.complete,
        "pruned": result.pruned,
        "failed": result.failed,
        "seconds_per_trial": round(result.seconds_per_trial, 3),
        "tuning_seeds": list(tcfg.tuning_seeds),
        "evaluation_seeds_held_out": list(cfg.seeds),
        "study": result.study,
        "storage": storage,
        "context": tuned_context(template_cell(cfg, method, mspec), options, training),
    }
    path = tuned_path(results_dir, cfg.dataset.name, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    header = (f"# Written by python -m benchmark.tune; used by python -m benchmark.run --tuned.\n"
              f"# Best of {result.trials} trials (study {result.study}).\n")
    tmp.write_text(header + yaml.safe_dump(payload, sort_keys=False))
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class TunedParams:
    """A checked tuned file: the method's validated ``Options`` and budget with the tuned values."""

    method: str
    path: Path
    options: Any                 # the method's validated Options instance
    training: TrainingConfig     # the config's budget with the tuned training values
    trials: int
    missing: str
    study: str
    evaluation_seeds: tuple[int, ...]
    context: dict

    def provenance(self) -> dict[str, str]:
        """``RunSpec.tuned``: where the parameters came from (MLflow tags of the tuned runs)."""
        return {"tuning_trials": str(self.trials), "tuned_missing": self.missing,
                "tuning_study": self.study, "tuned_file": str(self.path)}


def load_tuned(results_dir: Path, cfg: BenchmarkConfig, method: str) -> TunedParams:
    """Read and check ``<results>/<dataset>/tuned/<method>.yaml`` against the evaluation config."""
    path = tuned_path(results_dir, cfg.dataset.name, method)
    if not path.exists():
        raise ConfigError(f"--tuned: {path} does not exist; tune first: python -m benchmark.tune "
                          f"--dataset {cfg.dataset.name} --methods {method}")
    raw = read_yaml(path)
    for key in ("method", "dataset", "options", "training", "trials", "missing", "context"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key '{key}' (not a file written by benchmark.tune?)")
    if raw["method"] != method or raw["dataset"] != cfg.dataset.name:
        raise ConfigError(f"{path}: holds method '{raw['method']}' on dataset '{raw['dataset']}', "
                          f"expected '{method}' on '{cfg.dataset.name}'")
    if raw.get("version") != TUNED_FILE_VERSION:
        raise ConfigError(f"{path}: tuned file version {raw.get('version')!r}, this benchmark reads version "
                          f"{TUNED_FILE_VERSION}; retune: python -m benchmark.tune --dataset {cfg.dataset.name} "
                          f"--methods {method}")
    options, training = dict(raw["options"] or {}), dict(raw["training"] or {})
    bad = sorted(set(training) - set(TUNABLE_TRAINING))
    if bad:
        raise ConfigError(f"{path}: training.{bad[0]} is not a tunable training parameter")
    tuned_options, tuned_training = resolve_params(cfg, method, options, training, str(path))
    held_out = tuple(int(s) for s in raw.get("evaluation_seeds_held_out") or ())
    unseen = [s for s in cfg.seeds if s not in held_out]
    if unseen:
        raise ConfigError(f"{path}: evaluation seed {unseen[0]} was not held out while tuning (held out: "
                          f"{list(held_out)}); its test rows may have been tuned on. Retune with --seeds "
                          f"{','.join(map(str, cfg.seeds))}")
    evaluation = cell_spec(cfg, method, cfg.missing.specs()[0], cfg.seeds[0])
    diff = _first_difference(raw["context"], tuned_context(evaluation, options, training))
    if diff:
        raise ConfigError(f"{path}: tuned under a different configuration ({diff}); retune or evaluate "
                          f"with the configuration used for tuning")
    m = raw["missing"]
    return TunedParams(method, path, tuned_options, tuned_training, int(raw["trials"]),
                       f"{m['pattern']}/{m['protocol']}/{float(m['rate']):g}", str(raw.get("study", "")),
                       held_out, raw["context"])


def _first_difference(tuned: Any, current: Any, where: str = "") -> str:
    if isinstance(tuned, Mapping) and isinstance(current, Mapping):
        for key in sorted(set(tuned) | set(current)):
            d = _first_difference(tuned.get(key), current.get(key), f"{where}.{key}" if where else str(key))
            if d:
                return d
        return ""
    if isinstance(tuned, (list, tuple)) and isinstance(current, (list, tuple)) and len(tuned) == len(current):
        for i, (a, b) in enumerate(zip(tuned, current)):
            d = _first_difference(a, b, f"{where}[{i}]")
            if d:
                return d
        return ""
    if tuned != current:
        return f"{where}: tuned with {tuned!r}, now {current!r}"
    return ""


def apply_tuned(cfg: BenchmarkConfig, grid: list[RunSpec], results_dir: Path) -> list[RunSpec]:
    """For ``benchmark.run --tuned``: the grid with each method's cells rebuilt with its tuned
    ``Options`` and budget, and the file's provenance in ``RunSpec.tuned``.  Nothing else is needed
    to keep tuned and default runs apart: the identity says ``tuned``, so their keys differ.
    Reference (oracle) cells are unchanged."""
    tuned = {method: load_tuned(results_dir, cfg, method) for method in cfg.methods}
    out = []
    for spec in grid:
        tp = tuned.get(spec.method)
        if spec.is_reference or tp is None:
            out.append(spec)
            continue
        out.append(cell_spec(cfg, spec.method, spec.missing, spec.seed, options=tp.options,
                             training=tp.training, tuned=tp.provenance()))
    return out
