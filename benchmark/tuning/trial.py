"""One trial: the trial's configuration trained on every tuning seed, reported to the pruner after
every epoch, and logged as a nested MLflow run of its study's parent run.

The objective is the validation primary metric (AUC) at the selected epoch, averaged over the
tuning seeds.  After every epoch the validation metric is reported at step
``seed_index * epochs + epoch``, so the pruner compares trials at the same point of the budget.
"""
from __future__ import annotations

from typing import Mapping

import mlflow
import numpy as np
import optuna
from optuna.trial import TrialState

from benchmark.config.schema import BenchmarkConfig
from benchmark.training.device import seed_everything
from benchmark.training.loop import train_method
from benchmark.tuning.settings import TuneConfig
from benchmark.tuning.space import ParamSpec, resolve_params, split_params
from core.batch import PreparedData
from methods import create_method


def run_trial(cfg: BenchmarkConfig, tcfg: TuneConfig, method: str, trial: optuna.Trial,
              space: Mapping[str, ParamSpec], data_by_seed: Mapping[int, PreparedData], parent_id: str,
              exp_id: str, name: str) -> tuple[TrialState, float | None, str]:
    """Train the trial's configuration on every tuning seed; returns (state, value, note).

    Pruned and diverged (non-finite loss) trials are outcomes and count toward the budget.
    KeyboardInterrupt: the trial is marked FAIL, its parameters enqueued again, and the interrupt
    propagates.  Any other exception is a bug or a bad configuration, not an outcome: the trial is
    marked FAIL and the exception propagates (nothing is skipped silently).
    """
    params = {n: p.suggest(trial) for n, p in space.items()}
    epochs = cfg.training.max_epochs  # step offsets: seed index x the cap (early stopping ends sooner)
    tags = {"kind": "tuning_trial", "optuna_study": name, "optuna_trial": str(trial.number), "method": method,
            "dataset": cfg.dataset.name, "mlflow.parentRunId": parent_id}
    state, value, note = TrialState.COMPLETE, None, ""
    raised: BaseException | None = None
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{method} trial {trial.number}", nested=True, tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        try:
            options_delta, training_delta = split_params(params)
            options, training = resolve_params(cfg, method, options_delta, training_delta,
                                               f"method '{method}' (trial {trial.number})")
            values = []
            for index, seed in enumerate(tcfg.tuning_seeds):
                data = data_by_seed[int(seed)]
                metric = f"val_{data.info.primary_metric}"

                def on_epoch(epoch: int, record: dict[str, float], offset: int = index * epochs) -> None:
                    step = offset + epoch
                    mlflow.log_metrics({k: float(v) for k, v in record.items() if np.isfinite(v)}, step=step)
                    score = record.get(metric)
                    if score is not None and np.isfinite(score):
                        trial.report(float(score), step)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"{metric}={score:.4f} at step {step}")

                seed_everything(int(seed))
                model = create_method(method, data.info, cfg.encoders, options=options)
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
