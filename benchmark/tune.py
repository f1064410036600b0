"""``python -m benchmark.tune``: equal-budget hyperparameter tuning with Optuna, tracked in MLflow.

Why this module exists: a comparison where one method got hand-tuned and the others ran with
defaults measures the tuning effort, not the method.  Here every method gets the same budget:
the same number of trials (COMPLETE + PRUNED), the same seeded TPE sampler, the same pruner,
the same tuning seeds and the same epoch budget; only its declared search space differs.

* Search spaces: each method's ``search_space`` (``configs/methods/<name>.yaml`` when that file
  has the key, else the method class's ``search_space``) plus the shared space of
  ``configs/tune.yaml`` (``training.lr``, ``training.batch_size``).  Validated at load: an unknown
  option or a value the method's ``Options`` would reject raises :class:`ConfigError` naming the
  file and key.  The config's defaults are enqueued as trial 0 (``enqueue_defaults``), so the tuned
  result is never worse than the default on validation.
* Objective: the validation primary metric (AUC) at the selected epoch, averaged over the tuning
  seeds (default 100, 101; they must differ from the evaluation seeds).  The test split is never
  touched: the tuning data hold the train and validation rows only, minus every row that is a test
  row for any evaluation seed (this matters for datasets without an official split).
* Pruning: after every epoch the validation metric is reported at step
  ``seed_index * epochs + epoch``; the median (or Hyperband) pruner stops trials below the others.
  A trial whose loss diverges (non-finite) is pruned too: divergence is an outcome of that
  configuration, and counting it keeps budgets equal.
* Storage and resume: one study per (dataset, method, missing spec, config fingerprint) in an
  Optuna RDB store (``sqlite:///<results>/optuna.db``).  A rerun continues the study: finished
  trials are never repeated; a trial left RUNNING by a killed process is marked FAIL and its
  parameters are enqueued again.  The sampler is reseeded with ``seed + trials so far`` on resume
  so it does not replay the random start-up points already tried.
* MLflow: one parent run per study (experiment ``medfusion-<dataset>-tuning``, never the evaluation
  experiment, and no ``runspec_key`` tag, so leaderboards never see a trial) and one nested child
  run per trial.
* Output: ``<results>/<dataset>/tuned/<method>.yaml`` with the best parameters; ``python -m
  benchmark.run --tuned`` evaluates them on the evaluation seeds (see :func:`apply_tuned`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import yaml

from benchmark.config import CONFIG_DIR, BenchmarkConfig, read_yaml
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.options import from_mapping, to_mapping

TUNE_CONFIG = CONFIG_DIR / "tune.yaml"
# TrainingConfig fields a shared space may tune.  Not epochs: the epoch budget is what is shared.
TUNABLE_TRAINING = ("lr", "batch_size", "weight_decay", "grad_clip")
TUNED_FILE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# configs/tune.yaml
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# search spaces
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RawParam:
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter: ``name`` is ``options.<option>`` or ``training.<field>``."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    def suggest(self, trial: Any) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def probe_values(self) -> list[Any]:
        """Values that bound what the space can produce (checked against the method's Options)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


def parse_param(name: str, spec: Any, where: str) -> ParamSpec:
    """``{type, low, high, log, choices}`` -> :class:`ParamSpec`; bad type or range -> ConfigError."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{type: float|int|categorical, ...}}, got {spec!r}")
    raw = from_mapping(_RawParam, spec, where)
    if raw.type == "categorical":
        if raw.low is not None or raw.high is not None or raw.log:
            raise ConfigError(f"{where}: a categorical parameter takes 'choices' only (no low/high/log)")
        if not raw.choices:
            raise ConfigError(f"{where}.choices: a non-empty list is needed")
        for c in raw.choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{where}.choices: {c!r} is not a scalar (Optuna stores bool, int, float, str, null)")
        if len(set(map(repr, raw.choices))) != len(raw.choices):
            raise ConfigError(f"{where}.choices: duplicate value in {raw.choices}")
        return ParamSpec(name, "categorical", choices=tuple(raw.choices))
    if raw.choices is not None:
        raise ConfigError(f"{where}: 'choices' is for type categorical; a {raw.type} takes low/high")
    if raw.low is None or raw.high is None:
        raise ConfigError(f"{where}: type {raw.type} needs both 'low' and 'high'")
    low, high = raw.low, raw.high
    if raw.type == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}: type int needs integer low/high, got {low!r}, {high!r}")
        low, high = int(low), int(high)
    if not math.isfinite(low) or not math.isfinite(high) or low >= high:
        raise ConfigError(f"{where}: needs finite low < high, got low={low!r}, high={high!r}")
    if raw.log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got low={low!r}")
    return ParamSpec(name, raw.type, low=low, high=high, log=raw.log)


def shared_space(tcfg: TuneConfig, training: Any = None, where: str = "configs/tune.yaml") -> dict[str, ParamSpec]:
    """The space every method shares (``training.<field>``), checked against TrainingConfig."""
    from benchmark.training import TrainingConfig

    base = to_mapping(training if training is not None else TrainingConfig())
    out: dict[str, ParamSpec] = {}
    for name, spec in (tcfg.shared_space or {}).items():
        place = f"{where}: shared_space.{name}"
        section, _, key = str(name).partition(".")
        if section != "training" or key not in TUNABLE_TRAINING:
            raise ConfigError(f"{place}: unknown shared parameter '{name}'; known: "
                              + ", ".join(f"training.{k}" for k in TUNABLE_TRAINING)
                              + " (the epoch budget is shared, not tuned)")
        p = parse_param(name, spec, place)
        for value in p.probe_values():
            try:
                from_mapping(TrainingConfig, {**base, key: value}, place)
            except ConfigError as exc:
                raise ConfigError(f"{place}: value {value!r} is not a valid training.{key}: {exc}") from None
        out[name] = p
    return out


def method_space(method: str, base_options: Mapping[str, Any] | None = None,
                 config_dir: Path = CONFIG_DIR) -> dict[str, ParamSpec]:
    """A method's declared space: ``search_space`` of ``configs/methods/<method>.yaml`` if the file
    has that key (``{}`` there means: tune the shared parameters only), else the class attribute.

    Every key must be ``options.<name>`` of the method's ``Options`` and every value the space can
    produce must pass the method's option validation; otherwise ConfigError names file and key.
    """
    from methods import get_method_class

    cls = get_method_class(method)
    path = Path(config_dir) / "methods" / f"{method}.yaml"
    raw = read_yaml(path) if path.exists() else {}
    if "search_space" in raw:
        space, where = raw["search_space"] or {}, str(path)
    else:
        space, where = dict(getattr(cls, "search_space", {}) or {}), f"{cls.__module__}.{cls.__name__}.search_space"
    if not isinstance(space, Mapping):
        raise ConfigError(f"{where}: search_space must be a mapping 'options.<name>' -> spec, got {space!r}")
    option_fields = sorted(f.name for f in dataclasses.fields(cls.Options)) if dataclasses.is_dataclass(cls.Options) else []
    base = dict(base_options or {})
    out: dict[str, ParamSpec] = {}
    for name, spec in space.items():
        place = f"{where}: search_space.{name}"
        section, _, key = str(name).partition(".")
        if section != "options":
            raise ConfigError(f"{place}: a method space tunes 'options.<name>' only; shared training "
                              f"parameters belong in configs/tune.yaml shared_space")
        if key not in option_fields:
            raise ConfigError(f"{place}: unknown option '{key}' of method '{method}'; known: "
                              f"{', '.join(option_fields) or '(none)'}")
        p = parse_param(name, spec, place)
        for value in p.probe_values():
            try:
                from_mapping(cls.Options, {**base, key: value}, f"method '{method}' options")
            except ConfigError as exc:
                raise ConfigError(f"{place}: value {value!r} is not a valid option: {exc}") from None
        out[name] = p
    return out


def study_space(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str) -> dict[str, ParamSpec]:
    return {**method_space(method, cfg.options_for(method)), **shared_space(tcfg, cfg.training)}


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat trial params -> (method options, training overrides)."""
    options = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("options.")}
    training = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("training.")}
    return options, training


def default_params(cfg: BenchmarkConfig, method: str, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The config's own values for the searched parameters (those inside the space)."""
    options, training = cfg.options_for(method), to_mapping(cfg.training)
    out = {}
    for name, p in space.items():
        source = options if p.section == "options" else training
        if p.key in source and p.contains(source[p.key]):
            out[name] = source[p.key]
    return out


# ---------------------------------------------------------------------------------------------
# data: train and validation rows only
# ---------------------------------------------------------------------------------------------
class TuningView:
    """The dataset as tuning sees it: its train and val rows, minus every row that is a test row
    for the tuning seed or any evaluation seed.  ``prepare_data`` on this view never builds a
    test split, so no test image is loaded and no test record is encoded."""

    def __init__(self, dataset: Any, table: Any, evaluation_seeds: Sequence[int]) -> None:
        self._dataset = dataset
        held_out = [dataset.split_indices(table, int(s))["test"] for s in evaluation_seeds]
        self.held_out = np.unique(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def split_indices(self, table: Any, seed: int) -> dict[str, np.ndarray]:
        rows = self._dataset.split_indices(table, seed)
        excluded = np.union1d(self.held_out, rows["test"])
        return {"train": np.setdiff1d(rows["train"], excluded), "val": np.setdiff1d(rows["val"], excluded)}


def prepare_tuning_data(dataset: Any, table: Any, mspec: Any, seeds: Sequence[int],
                        evaluation_seeds: Sequence[int]) -> dict[int, Any]:
    """PreparedData (train + val only) per tuning seed, shared by every trial and method."""
    from benchmark.data import prepare_data

    view = TuningView(dataset, table, evaluation_seeds)
    out = {}
    for seed in seeds:
        data = prepare_data(view, table, mspec, int(seed), None)
        assert "test" not in data.splits, "tuning data must not contain a test split"
        for split in ("train", "val"):
            if len(data.splits[split]) == 0:
                raise ConfigError(f"tuning seed {seed}: no {split} rows left after holding out the test rows "
                                  f"of the evaluation seeds; tuning needs a validation split")
        out[int(seed)] = data
    return out


# ---------------------------------------------------------------------------------------------
# one study
# ---------------------------------------------------------------------------------------------
def study_fingerprint(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: Any,
                      space: Mapping[str, ParamSpec]) -> str:
    """Everything that changes what a trial measures; ``trials`` is not part of it, so raising
    ``--trials`` continues the same study."""
    payload = {"config": cfg.hash_for(method), "space": {k: dataclasses.asdict(v) for k, v in space.items()},
               "tuning_seeds": list(tcfg.tuning_seeds), "evaluation_seeds": list(cfg.seeds),
               "missing": [mspec.pattern, mspec.protocol, mspec.rate, mspec.image_share],
               "sampler": to_mapping(tcfg.sampler), "pruner": to_mapping(tcfg.pruner),
               "enqueue_defaults": tcfg.enqueue_defaults}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def study_name(cfg: BenchmarkConfig, method: str, mspec: Any, fingerprint: str) -> str:
    return f"{cfg.dataset.name}.{method}.{mspec.pattern}-{mspec.protocol}-{mspec.rate:g}.{fingerprint}"


def make_sampler(tcfg: TuneConfig, trials_so_far: int):
    import optuna
    return optuna.samplers.TPESampler(seed=tcfg.sampler.seed + trials_so_far,
                                      n_startup_trials=tcfg.sampler.n_startup_trials)


def make_pruner(tcfg: TuneConfig, max_steps: int):
    import optuna
    p = tcfg.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource, max_resource=max(max_steps, p.min_resource),
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def storage_url(storage: str | None, results_dir: Path) -> str:
    if storage:
        return storage
    results_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(results_dir / 'optuna.db').resolve()}"


def counted(study: Any) -> int:
    """Trials that count toward the budget: COMPLETE and PRUNED."""
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


@dataclass
class StudyResult:
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


def run_study(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: Any, data_by_seed: Mapping[int, Any],
              storage: str, tracker: Any, exp_id: str, results_dir: Path, console: Any) -> StudyResult:
    """Run (or continue) the study of one method until ``tcfg.trials`` trials are COMPLETE/PRUNED."""
    import mlflow
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = study_space(cfg, tcfg, method)
    fingerprint = study_fingerprint(cfg, tcfg, method, mspec, space)
    name = study_name(cfg, method, mspec, fingerprint)
    max_steps = len(tcfg.tuning_seeds) * cfg.training.epochs
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    # A trial a killed process left RUNNING: mark it FAIL and enqueue its parameters again.
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(stale.params), user_attrs={"retry_of": stale.number})
        console.print(f"  trial {stale.number} of {method} was left unfinished: marked FAIL, parameters enqueued again")
    if tcfg.enqueue_defaults and not study.trials:
        study.enqueue_trial(default_params(cfg, method, space), user_attrs={"defaults": True})
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(tcfg, len(study.trials)),
                              pruner=make_pruner(tcfg, max_steps))
    for key, value in {"dataset": cfg.dataset.name, "method": method, "missing": mspec.label,
                       "tuning_seeds": list(tcfg.tuning_seeds), "epochs": cfg.training.epochs,
                       "fingerprint": fingerprint}.items():
        study.set_user_attr(key, value)

    client = tracker.client
    parents = client.search_runs([exp_id], filter_string=f"tags.optuna_study = '{name}' and tags.kind = 'tuning'")
    for run in client.search_runs([exp_id], filter_string=f"tags.optuna_study = '{name}' and tags.kind = 'tuning_trial' "
                                                          f"and attributes.status = 'RUNNING'"):
        client.set_terminated(run.info.run_id, "KILLED")
    parent_kwargs: dict[str, Any] = ({"run_id": parents[0].info.run_id} if parents else
                                     {"experiment_id": exp_id, "run_name": f"tune {method} {mspec.label}",
                                      "tags": {"kind": "tuning", "optuna_study": name, "method": method,
                                               "dataset": cfg.dataset.name, "missing": mspec.label}})
    done = counted(study)
    console.print(f"[bold]{method}[/]: study {name}: {done}/{tcfg.trials} trials done  (Optuna: {storage})")
    failures = 0
    seconds: list[float] = []
    with mlflow.start_run(**parent_kwargs) as parent:
        mlflow.set_tag("trials_target", str(tcfg.trials))  # a tag: --trials may grow on a later run
        if not parents:  # MLflow params are immutable; the fingerprint fixes them for the study
            mlflow.log_params({"tuning_seeds": ",".join(map(str, tcfg.tuning_seeds)),
                               "evaluation_seeds_held_out": ",".join(map(str, cfg.seeds)), "epochs": cfg.training.epochs,
                               "sampler": json.dumps(to_mapping(tcfg.sampler)), "pruner": json.dumps(to_mapping(tcfg.pruner)),
                               "search_space": json.dumps({k: dataclasses.asdict(v) for k, v in space.items()})[:6000],
                               **{f"train_rows_seed{s}": len(d.splits["train"]) for s, d in data_by_seed.items()},
                               **{f"val_rows_seed{s}": len(d.splits["val"]) for s, d in data_by_seed.items()}})
        while done < tcfg.trials:
            trial = study.ask()
            t0 = time.time()
            state, value, note = _run_trial(cfg, tcfg, method, trial, space, data_by_seed, parent.info.run_id, exp_id, name)
            seconds.append(time.time() - t0)
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
            console.print(f"  trial {trial.number:>3} {state.name:<8} {shown}  ({seconds[-1]:.1f} s)  [{done}/{tcfg.trials}]",
                          markup=False)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            raise BenchmarkError(f"method '{method}': study {name} has no COMPLETE trial; nothing to write")
        best = study.best_trial
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                     if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start]
        result = StudyResult(method=method, study=name, trials=done, complete=len(complete),
                             pruned=sum(t.state == TrialState.PRUNED for t in trials),
                             failed=sum(t.state == TrialState.FAIL for t in trials), best_value=float(best.value),
                             best_params=dict(best.params), best_trial=best.number,
                             seconds_per_trial=float(np.mean(durations)) if durations else float("nan"),
                             metric=f"val_{next(iter(data_by_seed.values())).info.primary_metric}", tuned_file=None)
        result.tuned_file = write_tuned(cfg, tcfg, method, mspec, result, storage, results_dir)
        mlflow.log_metrics({"best_value": result.best_value, "trials": float(result.trials),
                            "complete": float(result.complete), "pruned": float(result.pruned),
                            "failed": float(result.failed), "seconds_per_trial": result.seconds_per_trial})
        mlflow.set_tags({"best_trial": str(best.number)})
        mlflow.log_artifact(str(result.tuned_file))
    return result


def _run_trial(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, trial: Any, space: Mapping[str, ParamSpec],
               data_by_seed: Mapping[int, Any], parent_id: str, exp_id: str, name: str):
    """Train the trial's configuration on every tuning seed; returns (state, value, note).

    Pruned and diverged (non-finite loss) trials are outcomes and count toward the budget.
    KeyboardInterrupt: the trial is marked FAIL, its parameters enqueued again, and the interrupt
    propagates.  Any other exception is a bug or a bad configuration, not an outcome: the trial is
    marked FAIL and the exception propagates (nothing is skipped silently).
    """
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from benchmark.training import seed_everything, train_method
    from methods import create_method, get_method_class

    params = {n: p.suggest(trial) for n, p in space.items()}
    options_delta, training_delta = split_params(params)
    options = {**cfg.options_for(method), **options_delta}
    training = replace(cfg.training, **training_delta)
    epochs = cfg.training.epochs
    tags = {"kind": "tuning_trial", "optuna_study": name, "optuna_trial": str(trial.number), "method": method,
            "dataset": cfg.dataset.name, "mlflow.parentRunId": parent_id}
    state, value, note = TrialState.COMPLETE, None, ""
    raised: BaseException | None = None
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{method} trial {trial.number}", nested=True, tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        try:
            from_mapping(get_method_class(method).Options, options, f"method '{method}' options (trial {trial.number})")
            values = []
            for index, seed in enumerate(tcfg.tuning_seeds):
                data = data_by_seed[int(seed)]
                metric = f"val_{data.info.primary_metric}"

                def on_epoch(epoch: int, record: dict[str, float], _offset: int = index * epochs) -> None:
                    step = _offset + epoch
                    mlflow.log_metrics({k: float(v) for k, v in record.items() if np.isfinite(v)}, step=step)
                    score = record.get(metric)
                    if score is not None and np.isfinite(score):
                        trial.report(float(score), step)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"{metric}={score:.4f} at step {step}")

                seed_everything(int(seed))
                model = create_method(method, data.info, cfg.encoders, **options)
                result = train_method(model, data, training, int(seed), on_epoch)
                mlflow.log_metric(f"{metric}_seed{seed}", result.best_val)
                values.append(result.best_val)
            value = float(np.mean(values))
            if not np.isfinite(value):
                state, value, note = TrialState.FAIL, None, f"objective is not finite ({values})"
            else:
                mlflow.log_metric("objective", value)
        except optuna.TrialPruned as exc:
            state, note = TrialState.PRUNED, f"pruned: {exc}"
        except FloatingPointError as exc:  # the configuration diverged: an outcome, counted as pruned
            state, note = TrialState.PRUNED, f"diverged: {exc}"
        except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - re-raised below
            raised = exc
            state, note = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
        mlflow.set_tags({"trial_state": "INTERRUPTED" if isinstance(raised, KeyboardInterrupt) else state.name,
                         **({"note": note[:500]} if note else {})})
    if raised is not None:
        # Not an outcome of the configuration: FAIL (does not count toward the budget) and re-raise.
        # An interrupted trial's parameters are enqueued so the resumed study runs them first.
        interrupted = isinstance(raised, KeyboardInterrupt)
        trial.study.tell(trial, state=TrialState.FAIL)
        if interrupted:
            trial.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
        mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, "KILLED" if interrupted else "FAILED")
        raise raised
    return state, value, note


# ---------------------------------------------------------------------------------------------
# tuned files: written by tune, read by ``benchmark.run --tuned``
# ---------------------------------------------------------------------------------------------
def tuned_path(results_dir: Path, dataset: str, method: str) -> Path:
    return Path(results_dir) / dataset / "tuned" / f"{method}.yaml"


def _context(cfg: BenchmarkConfig, method: str) -> dict[str, Any]:
    """What must match between tuning and evaluation (the tuned keys themselves excluded)."""
    training = to_mapping(cfg.training)
    for key in ("device", "threads", "eval_batch_size"):
        training.pop(key, None)
    dataset = to_mapping(cfg.dataset)
    dataset.pop("root", None)
    return {"dataset": dataset, "encoders": to_mapping(cfg.encoders), "training": training,
            "method_options": to_mapping(cfg.options_for(method)), "image_share": cfg.missing.image_share}


def write_tuned(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, mspec: Any, result: StudyResult,
                storage: str, results_dir: Path) -> Path:
    options, training = split_params(result.best_params)
    context = _context(cfg, method)
    for key in training:
        context["training"].pop(key, None)
    for key in options:
        context["method_options"].pop(key, None)
    payload = {
        "version": TUNED_FILE_VERSION,
        "method": method,
        "dataset": cfg.dataset.name,
        "missing": {"pattern": mspec.pattern, "protocol": mspec.protocol, "rate": float(mspec.rate)},
        "options": to_mapping(options),
        "training": to_mapping(training),
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
        "context": context,
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
    method: str
    path: Path
    options: dict
    training: dict
    trials: int
    missing: str
    study: str
    evaluation_seeds: tuple[int, ...]
    context: dict


def load_tuned(results_dir: Path, cfg: BenchmarkConfig, method: str) -> TunedParams:
    """Read and check ``<results>/<dataset>/tuned/<method>.yaml`` against the evaluation config."""
    from benchmark.training import TrainingConfig
    from methods import get_method_class

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
    options, training = dict(raw["options"] or {}), dict(raw["training"] or {})
    bad = sorted(set(training) - set(TUNABLE_TRAINING))
    if bad:
        raise ConfigError(f"{path}: training.{bad[0]} is not a tunable training parameter")
    from_mapping(get_method_class(method).Options, {**cfg.options_for(method), **options}, f"{path}: options")
    from_mapping(TrainingConfig, {**to_mapping(cfg.training), **training}, f"{path}: training")
    held_out = tuple(int(s) for s in raw.get("evaluation_seeds_held_out") or ())
    unseen = [s for s in cfg.seeds if s not in held_out]
    if unseen:
        raise ConfigError(f"{path}: evaluation seed {unseen[0]} was not held out while tuning (held out: "
                          f"{list(held_out)}); its test rows may have been tuned on. Retune with --seeds "
                          f"{','.join(map(str, cfg.seeds))}")
    expected = _context(cfg, method)
    for key in training:
        expected["training"].pop(key, None)
    for key in options:
        expected["method_options"].pop(key, None)
    diff = _first_difference(raw["context"], expected)
    if diff:
        raise ConfigError(f"{path}: tuned under a different configuration ({diff}); retune or evaluate "
                          f"with the configuration used for tuning")
    m = raw["missing"]
    return TunedParams(method, path, options, training, int(raw["trials"]),
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


def apply_tuned(cfg: BenchmarkConfig, grid: list, results_dir: Path) -> tuple[list, dict[str, BenchmarkConfig], dict[str, dict[str, str]]]:
    """For ``benchmark.run --tuned``: per-method configs with the tuned parameters, the grid with
    their lr/batch size and a config hash that differs from the default run's (so tuned and default
    runs are distinct resume keys), and the tags for each method's runs."""
    from benchmark.runspec import ORACLE_METHOD

    configs: dict[str, BenchmarkConfig] = {}
    tags: dict[str, dict[str, str]] = {}
    hashes: dict[str, str] = {}
    for method in cfg.methods:
        tp = load_tuned(results_dir, cfg, method)
        options = {**cfg.method_options, method: {**cfg.options_for(method), **tp.options}}
        mcfg = replace(cfg, method_options=options, training=replace(cfg.training, **tp.training))
        configs[method] = mcfg
        payload = {"config": mcfg.hash_for(method), "tuned": True, "file": {"options": tp.options, "training": tp.training}}
        hashes[method] = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
        tags[method] = {"tuned": "true", "tuning_trials": str(tp.trials), "tuned_missing": tp.missing,
                        "tuning_study": tp.study, "tuned_file": str(tp.path)}
    out = []
    for spec in grid:
        if spec.method == ORACLE_METHOD or spec.method not in configs:
            out.append(spec)
            continue
        t = configs[spec.method].training
        out.append(replace(spec, lr=t.lr, batch_size=t.batch_size, weight_decay=t.weight_decay,
                           config_hash=hashes[spec.method]))
    return out, configs, tags


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser():
    """``benchmark.run``'s flags (same meaning) plus the tuning ones."""
    from benchmark.run import build_parser as run_parser

    p = run_parser()
    p.prog = "python -m benchmark.tune"
    p.description = ("Tune every method with the same Optuna budget (trials, sampler, pruner, seeds, epochs) on "
                     "validation data only, and write <results>/<dataset>/tuned/<method>.yaml for "
                     "`python -m benchmark.run --tuned`. Rerunning the same command resumes the studies. "
                     "--seeds are the evaluation seeds: their test rows are held out from tuning.")
    p.add_argument("--trials", type=int, help="COMPLETE + PRUNED trials per method (default: configs/tune.yaml)")
    p.add_argument("--tuning-seeds", help="comma-separated seeds used while tuning (default: configs/tune.yaml, 100,101)")
    p.add_argument("--tune-config", help="tuning settings (default: configs/tune.yaml)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<results-dir>/optuna.db)")
    return p


def tune(cfg: BenchmarkConfig, tcfg: TuneConfig, storage: str | None = None) -> tuple[list[StudyResult], list[str]]:
    """Tune every method of ``cfg`` at its (single) missing spec.

    Returns the finished studies and the failures: a study whose trial raised (a bug or a bad
    configuration, not an outcome) stops, is reported with its traceback, and the other methods
    are still tuned, as ``benchmark.run`` does with a failed cell.  Its tuned file is not written.
    """
    import traceback

    import torch
    from rich.console import Console

    from benchmark.masks import MissingSpec
    from benchmark.tracking import Tracker, resolve_tracking_uri
    from benchmark.training import resolve_device
    from datasets import create_dataset

    console = Console(stderr=True)
    if len(cfg.missing.rates) != 1:
        raise ConfigError(f"missing.rates: tuning takes one missing spec (a tuned file holds one parameter set "
                          f"per method), got {list(cfg.missing.rates)}; pass e.g. --missing-rate 0.5")
    overlap = sorted(set(tcfg.tuning_seeds) & set(cfg.seeds))
    if overlap:
        raise ConfigError(f"tuning_seeds: seed {overlap[0]} is also an evaluation seed ({list(cfg.seeds)}); "
                          f"tuning must not select on the evaluation masks and initialisations")
    for method in cfg.methods:  # validate every space before any training
        study_space(cfg, tcfg, method)
    results_dir = Path(cfg.results_dir)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    resolve_device(cfg.training.device)
    mspec = MissingSpec(cfg.missing.pattern, cfg.missing.rates[0], cfg.missing.protocol,  # type: ignore[arg-type]
                        cfg.missing.image_share)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            from benchmark.run import main as run_main
            return run_main(["--list"])
        if getattr(args, "tuned", False):
            raise ConfigError("--tuned is a flag of benchmark.run (evaluate tuned parameters), not of benchmark.tune")
        from benchmark.config import load_config
        from benchmark.run import _csv, overrides_from_args

        seeds = _csv(args.tuning_seeds, int, "--tuning-seeds") if args.tuning_seeds else None
        if args.trials is not None and args.trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {args.trials}")
        tcfg = load_tune_config(args.tune_config, trials=args.trials, tuning_seeds=seeds)
        cfg = load_config(args.config, overrides_from_args(args))
        if args.missing_rate is None and tcfg.missing_rate is not None:
            cfg = replace(cfg, missing=replace(cfg.missing, rates=(float(tcfg.missing_rate),)))
        _, failures = tune(cfg, tcfg, args.storage)
        return 1 if failures else 0
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
