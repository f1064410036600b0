"""Tune every method of a config: the checks that make budgets equal and tuning blind to the
evaluation, the data shared by every study, and one study per method."""
from __future__ import annotations

import time
import traceback
from pathlib import Path

import torch
from rich.console import Console

from benchmark.config.schema import BenchmarkConfig
from benchmark.tracking.store import Tracker, resolve_tracking_uri
from benchmark.training.device import resolve_device
from benchmark.tuning.data import prepare_tuning_data
from benchmark.tuning.settings import TuneConfig, study_space
from benchmark.tuning.study import run_study, storage_url
from benchmark.tuning.tuned_files import StudyResult
from core.errors import ConfigError
from core.masks import MissingSpec
from datasets import create_dataset


def check_tuning(cfg: BenchmarkConfig, tcfg: TuneConfig) -> MissingSpec:
    """The one missing spec to tune at; refuses tuning seeds that are evaluation seeds, and checks
    every method's space before any training."""
    if len(cfg.missing.rates) != 1:
        raise ConfigError(f"missing.rates: tuning takes one missing spec (a tuned file holds one parameter set "
                          f"per method), got {list(cfg.missing.rates)}; pass e.g. --missing-rate 0.5")
    overlap = sorted(set(tcfg.tuning_seeds) & set(cfg.seeds))
    if overlap:
        raise ConfigError(f"tuning_seeds: seed {overlap[0]} is also an evaluation seed ({list(cfg.seeds)}); "
                          f"tuning must not select on the evaluation masks and initialisations")
    for method in cfg.methods:
        study_space(cfg, tcfg, method)
    return cfg.missing.specs()[0]


def tune(cfg: BenchmarkConfig, tcfg: TuneConfig, storage: str | None = None) -> tuple[list[StudyResult], list[str]]:
    """Tune every method of ``cfg`` at its (single) missing spec.

    Returns the finished studies and the failures: a study whose trial raised (a bug or a bad
    configuration, not an outcome) stops, is reported with its traceback, and the other methods
    are still tuned, as ``benchmark.run`` does with a failed cell.  Its tuned file is not written.
    """
    console = Console(stderr=True)
    mspec = check_tuning(cfg, tcfg)
    results_dir = Path(cfg.results_dir)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    resolve_device(cfg.training.device)
    dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
    table = dataset.load_table()
    data_by_seed = prepare_tuning_data(dataset, table, mspec, tcfg.tuning_seeds, cfg.seeds)
    url = storage_url(storage, results_dir)
    tracker = Tracker(resolve_tracking_uri(None, cfg.tracking_uri, results_dir), results_dir)
    exp_id = tracker.experiment_id(f"{cfg.dataset.name}-tuning")  # experiment medfusion-<dataset>-tuning
    started = time.time()
    results: list[StudyResult] = []
    failures: list[str] = []
    for method in cfg.methods:
        try:
            results.append(run_study(cfg, tcfg, method, mspec, data_by_seed, url, tracker, exp_id, results_dir, console))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # reported, never skipped silently; the exit status is 1
            failures.append(f"{method}: {type(exc).__name__}: {exc}")
            console.print(f"[red]tuning {method} failed[/]: {type(exc).__name__}: {exc}", markup=True)
            console.print(traceback.format_exc(limit=6), markup=False)
    console.print(f"tuning done in {time.time() - started:.0f} s  (MLflow: {tracker.uri}, experiment "
                  f"medfusion-{cfg.dataset.name}-tuning)")
    for r in results:
        console.print(f"  {r.method:<18} best val {r.best_value:.4f} (trial {r.best_trial}); {r.complete} complete, "
                      f"{r.pruned} pruned, {r.failed} failed; {r.seconds_per_trial:.1f} s/trial -> {r.tuned_file}",
                      markup=False)
    if failures:
        console.print(f"[red]{len(failures)} method(s) failed[/] (their finished trials are kept; fix and rerun "
                      f"to resume):")
        for f in failures:
            console.print(f"  {f}", markup=False)
    return results, failures
