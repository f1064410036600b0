"""MLflow tracking: one parent run per invocation, one child per RunSpec, resume by key.

The resume rule lives here and only here (:func:`is_finished`, :meth:`Tracker.finished_keys`,
:meth:`Tracker.claim`): a key with a FINISHED attempt is never run again, and attempts a killed
process left RUNNING are closed as KILLED before a new attempt starts.

Backend choice: a SQLite file (``sqlite:///<results_dir>/mlflow.db``).  MLflow 3 refuses the
``./mlruns`` file store by default, and SQLite writes each run's status in a transaction, so a
process killed mid-grid leaves either a FINISHED run or an unfinished one — never a half-written
record.  Artifacts go to ``<results_dir>/mlartifacts``.  ``MLFLOW_TRACKING_URI`` (or
``--tracking-uri``) points at any other server.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import mlflow  # noqa: E402
from mlflow.entities import RunStatus  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

KEY_TAG = "runspec_key"
# mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into the environment, so read the user's
# value once, before any run of ours has set it.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_tracking_uri(cli_uri: str | None, config_uri: str | None, results_dir: Path) -> str:
    uri = cli_uri or _USER_TRACKING_URI or config_uri
    if uri:
        return uri
    results_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def experiment_name(dataset: str) -> str:
    return f"medfusion-{dataset}"


class Tracker:
    def __init__(self, tracking_uri: str, results_dir: Path) -> None:
        self.uri = tracking_uri
        self.results_dir = results_dir
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)

    def experiment_id(self, dataset: str, create: bool = True) -> str | None:
        name = experiment_name(dataset)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:") or self.uri.startswith("file:"):
            location = (self.results_dir / "mlartifacts" / name).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def runs_by_key(self, experiment_id: str) -> dict[str, list]:
        """All child runs grouped by RunSpec key (any status)."""
        out: dict[str, list] = {}
        page = None
        while True:
            result = self.client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} != ''",
                                             max_results=5000, page_token=page)
            for run in result:
                out.setdefault(run.data.tags[KEY_TAG], []).append(run)
            page = result.token
            if not page:
                return out

    def finished_keys(self, experiment_id: str) -> set[str]:
        """Keys with a FINISHED attempt: the resume rule (a finished cell is never run again)."""
        return {k for k, runs in self.runs_by_key(experiment_id).items() if is_finished(runs)}

    def close_stale(self, experiment_id: str, keys: Iterable[str] | None = None) -> int:
        """Attempts left RUNNING by a killed process (of unfinished keys, or of ``keys``): KILLED."""
        closed = 0
        by_key = self.runs_by_key(experiment_id)
        for key in (by_key if keys is None else keys):
            runs = by_key.get(key, [])
            if is_finished(runs):
                continue
            for run in runs:
                if run.info.status == "RUNNING":
                    self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                    closed += 1
        return closed

    def claim(self, experiment_id: str, key: str) -> bool:
        """Just before a cell runs (in whichever process runs it): False if the key already has a
        FINISHED attempt (e.g. a retried Ray task whose first attempt finished), else its stale
        attempts are closed and the caller may start a new one."""
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}'")
        if is_finished(runs):
            return False
        for run in runs:
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        return True


def is_finished(runs: Iterable) -> bool:
    """The one resume rule: a cell is done when any attempt of its key FINISHED."""
    return any(r.info.status == "FINISHED" for r in runs)
