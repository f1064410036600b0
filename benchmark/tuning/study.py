"""One study per (dataset, method, missing spec, fingerprint), stored in an Optuna RDB and tracked
as one MLflow parent run, run (or continued) until the budget of COMPLETE + PRUNED trials is met.

Resume: a rerun continues the study, so finished trials are never repeated; a trial left RUNNING
by a killed process is marked FAIL and its parameters are enqueued again.  The sampler is
reseeded with ``seed + trials so far`` on resume so it does not replay the random start-up points
already tried.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import mlflow
import numpy as np
import optuna
from optuna.trial import TrialState

from benchmark.config.schema import BenchmarkConfig
from benchmark.tracking.runs import tracked_run
from benchmark.tracking.store import Tracker
from benchmark.tuning.identity import study_fingerprint
from benchmark.tuning.settings import TuneConfig, study_space
from benchmark.tuning.space import ParamSpec, default_params, space_mapping
from benchmark.tuning.trial import run_trial
from benchmark.tuning.tuned_files import StudyResult, write_tuned
from core.batch import PreparedData
from core.errors import BenchmarkError
from core.masks import MissingSpec
from core.options import to_mapping


def study_name(cfg: BenchmarkConfig, method: str, mspec: MissingSpec, fingerprint: str) -> str:
    return f"{cfg.dataset.name}.{method}.{mspec.pattern}-{mspec.protocol}-{mspec.rate:g}.{fingerprint}"


def make_sampler(tcfg: TuneConfig, trials_so_far: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=tcfg.sampler.seed + trials_so_far,
                                      n_startup_trials=tcfg.sampler.n_startup_trials)


def make_pruner(tcfg: TuneConfig, max_steps: int) -> optuna.pruners.BasePruner:
    p = tcfg.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=max(max_steps, p.min_resource),
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def storage_url(storage: str | None, results_dir: Path) -> str:
    """The Optuna storage: ``storage`` if given, else ``sqlite:///<results>/optuna.db``."""
    if storage:
        return storage
    results_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(results_dir / 'optuna.db').resolve()}"


def counted(study: optuna.Study) -> int:
    """Trials that count toward the budget: COMPLETE and PRUNED."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def open_study(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, name: str, storage: str,
               space: Mapping[str, ParamSpec], console: Any) -> optuna.Study:
    """Create or load the study; close trials a killed process left RUNNING (their parameters are
    enqueued again), enqueue the config's defaults as trial 0, and reseed the sampler."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(stale.params), user_attrs={"retry_of": stale.number})
        console.print(f"  trial {stale.number} of {method} was left unfinished: marked FAIL, parameters enqueued again")
    if tcfg.enqueue_defaults and not study.trials:
        study.enqueue_trial(default_params(cfg, method, space), user_attrs={"defaults": True})
    max_steps = len(tcfg.tuning_seeds) * cfg.training.max_epochs
    return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(tcfg, len(study.trials)),
                             pruner=make_pruner(tcfg, max_steps))


def parent_run(tracker: Tracker, exp_id: str, name: str, method: str, dataset: str, mspec: MissingSpec) -> dict[str, Any]:
    """``tracked_run`` arguments of the study's parent run: the existing one on resume (its
    trial runs left RUNNING by a killed process are closed as KILLED), else a new one."""
    client = tracker.client
    parents = client.search_runs([exp_id], filter_string=f"tags.optuna_study = '{name}' and tags.kind = 'tuning'")
    for run in client.search_runs([exp_id], filter_string=f"tags.optuna_study = '{name}' and tags.kind = 'tuning_trial' "
                                                          f"and attributes.status = 'RUNNING'"):
        client.set_terminated(run.info.run_id, "KILLED")
    if parents:
        return {"run_id": parents[0].info.run_id}
    return {"experiment_id": exp_id, "run_name": f"tune {method} {mspec.label}",
            "tags": {"kind": "tuning", "optuna_study": name, "method": method, "dataset": dataset,
                     "missing": mspec.label}}


def run_study(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: MissingSpec,
              data_by_seed: Mapping[int, PreparedData], storage: str, tracker: Tracker, exp_id: str,
              results_dir: Path, console: Any) -> StudyResult:
    """Run (or continue) the study of one method until ``tcfg.trials`` trials are COMPLETE/PRUNED."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = study_space(cfg, tcfg, method)
    fingerprint = study_fingerprint(cfg, tcfg, method, mspec, space)
    name = study_name(cfg, method, mspec, fingerprint)
    study = open_study(cfg, tcfg, method, name, storage, space, console)
    for key, value in {"dataset": cfg.dataset.name, "method": method, "missing": mspec.label,
                       "tuning_seeds": list(tcfg.tuning_seeds), "epochs": cfg.training.max_epochs,
                       "fingerprint": fingerprint}.items():
        study.set_user_attr(key, value)
    parent_kwargs = parent_run(tracker, exp_id, name, method, cfg.dataset.name, mspec)
    done = counted(study)
    console.print(f"[bold]{method}[/]: study {name}: {done}/{tcfg.trials} trials done  (Optuna: {storage})")
    failures = 0
    with tracked_run(**parent_kwargs) as parent:  # interrupted -> KILLED (mlflow.start_run says FAILED)
        mlflow.set_tag("trials_target", str(tcfg.trials))  # a tag: --trials may grow on a later run
        if "run_id" not in parent_kwargs:  # MLflow params are immutable; the fingerprint fixes them for the study
            mlflow.log_params({"tuning_seeds": ",".join(map(str, tcfg.tuning_seeds)),
                               "evaluation_seeds_held_out": ",".join(map(str, cfg.seeds)), "epochs": cfg.training.max_epochs,
                               "sampler": json.dumps(to_mapping(tcfg.sampler)), "pruner": json.dumps(to_mapping(tcfg.pruner)),
                               "search_space": json.dumps(space_mapping(space))[:6000],
                               **{f"train_rows_seed{s}": len(d.splits["train"]) for s, d in data_by_seed.items()},
                               **{f"val_rows_seed{s}": len(d.splits["val"]) for s, d in data_by_seed.items()}})
        while done < tcfg.trials:
            trial = study.ask()
            t0 = time.time()
            state, value, note = run_trial(cfg, tcfg, method, trial, space, data_by_seed, parent.info.run_id, exp_id, name)
            seconds = time.time() - t0
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                if note:
                    trial.set_user_attr("note", note)
                study.tell(trial, state=state)
            if state == TrialState.FAIL:
                failures += 1
                if failures > tcfg.trials:
                    raise BenchmarkError(f"method '{method}': {failures} failed trials in study {name} "
                                         f"(last: {note}); stopping")
            done = counted(study)
            shown = f"{value:.4f}" if value is not None else note
            console.print(f"  trial {trial.number:>3} {state.name:<8} {shown}  ({seconds:.1f} s)  [{done}/{tcfg.trials}]",
                          markup=False)
        result = study_result(study, method, name, done, data_by_seed)
        result.tuned_file = write_tuned(cfg, tcfg, method, mspec, result, storage, results_dir)
        mlflow.log_metrics({"best_value": result.best_value, "trials": float(result.trials),
                            "complete": float(result.complete), "pruned": float(result.pruned),
                            "failed": float(result.failed), "seconds_per_trial": result.seconds_per_trial})
        mlflow.set_tags({"best_trial": str(result.best_trial)})
        mlflow.log_artifact(str(result.tuned_file))
    return result


def study_result(study: optuna.Study, method: str, name: str, done: int,
                 data_by_seed: Mapping[int, PreparedData]) -> StudyResult:
    """The best trial and the counts of a study that reached its budget (no COMPLETE trial: an error)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise BenchmarkError(f"method '{method}': study {name} has no COMPLETE trial; nothing to write")
    best = study.best_trial
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start]
    return StudyResult(method=method, study=name, trials=done, complete=len(complete),
                       pruned=sum(t.state == TrialState.PRUNED for t in trials),
                       failed=sum(t.state == TrialState.FAIL for t in trials), best_value=float(best.value),
                       best_params=dict(best.params), best_trial=best.number,
                       seconds_per_trial=float(np.mean(durations)) if durations else float("nan"),
                       metric=f"val_{next(iter(data_by_seed.values())).info.primary_metric}", tuned_file=None)
