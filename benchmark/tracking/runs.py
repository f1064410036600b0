"""One MLflow run's life: it ends FINISHED only when its body completed, else KILLED or FAILED with why.

:func:`tracked_run` is what the grid driver (the parent run), the cell runner (each child) and a
tuning study (its parent run) use instead of ``with mlflow.start_run()``, which ends every
exception, a SIGTERM-turned-KeyboardInterrupt included, as FAILED:

* the body completed -> FINISHED (so a cell is FINISHED only after all its artifacts were written);
* ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into one) or ``SystemExit`` (a Ray worker being
  stopped) -> KILLED, tag ``killed_reason``;
* any other exception -> FAILED, tag ``failure_reason`` (type and message: e.g. the epoch and the
  loss values of a non-finite loss);
* :class:`~benchmark.tracking.store.TrackingUnavailable` -> nothing is written (the store is gone);
  the run stays RUNNING and the next start closes it as KILLED.

Writing the end status may itself fail (the store went away): the original exception is kept and
the run is off MLflow's active-run stack all the same (``mlflow.end_run`` pops it first), so the
next cell never nests in it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import mlflow
from mlflow.entities import RunStatus

from benchmark.tracking.store import FAILURE_REASON, KILLED_REASON, TrackingUnavailable

QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def end_active(run_id: str, status: str, tags: dict[str, str] | None = None, write: bool = True) -> None:
    """End ``run_id`` if it is the active run, with ``status`` (and ``tags``); never raises.
    ``write=False``: the store is known to be gone, so only one quick attempt is made (no retries,
    a short timeout)."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        return
    saved = {k: os.environ.get(k) for k in QUICK}
    if not write:
        os.environ.update(QUICK)
    try:
        if write and tags:
            mlflow.set_tags({k: v[:5000] for k, v in tags.items()})
        mlflow.end_run(status)  # takes the run off the active-run stack before writing
    except Exception:  # noqa: BLE001 - the store went away: the next start closes the run
        pass
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def tracked_run(experiment_id: str | None = None, run_name: str | None = None, tags: dict[str, str] | None = None,
                nested: bool = False, run_id: str | None = None) -> Iterator:
    """A new run (``experiment_id``, ``run_name``, ``tags``), or with ``run_id`` an existing one
    resumed (a tuning study's parent run across invocations), ended as the module docstring says."""
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested, tags=tags)
    try:
        yield run
    except TrackingUnavailable:
        end_active(run.info.run_id, RunStatus.to_string(RunStatus.KILLED), write=False)
        raise
    except (KeyboardInterrupt, SystemExit) as exc:
        why = str(exc) if isinstance(exc, KeyboardInterrupt) and str(exc) else describe(exc)  # "SIGINT received"
        end_active(run.info.run_id, RunStatus.to_string(RunStatus.KILLED), {KILLED_REASON: f"interrupted: {why}"})
        raise
    except BaseException as exc:
        end_active(run.info.run_id, RunStatus.to_string(RunStatus.FAILED), {FAILURE_REASON: describe(exc)})
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
