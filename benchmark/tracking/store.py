"""MLflow tracking: one parent run per invocation, one child per RunSpec, resume by key.

The resume rule lives here and only here (:func:`is_finished`, :meth:`Tracker.finished_keys`,
:meth:`Tracker.claim`): a key with a FINISHED attempt is never run again, and attempts a killed
process left RUNNING are closed as KILLED before a new attempt starts.

Crash safety: the parent run of an invocation records its driver (tags ``driver_pid``,
``driver_host``, ``driver_start``: the process start token).  On every start
(:meth:`Tracker.close_stale_parents`) a RUNNING parent whose driver is gone on this host (or
whose pid now belongs to another process) is closed as KILLED with the reason in the tag
``killed_reason``; a parent recorded on another host is left alone (its process cannot be
checked from here).  Children left RUNNING are closed the same way unless their parent is still a
live invocation.  :class:`StorageError`: the results directory cannot be written (unwritable,
disk full); the message names the path.

Backend choice: a SQLite file (``sqlite:///<results_dir>/mlflow.db``).  MLflow 3 refuses the
``./mlruns`` file store by default, and SQLite writes each run's status in a transaction, so a
process killed mid-grid leaves either a FINISHED run or an unfinished one — never a half-written
record.  Artifacts go to ``<results_dir>/mlartifacts``.  ``MLFLOW_TRACKING_URI`` (or
``--tracking-uri``) points at any other server.
"""
from __future__ import annotations

import errno
import os
import time
import uuid
from pathlib import Path
from typing import Iterable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import mlflow  # noqa: E402
from mlflow.entities import RunStatus  # noqa: E402
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from benchmark.tracking.processes import same_process, this_process  # noqa: E402
from core.errors import BenchmarkError, ConfigError  # noqa: E402

KEY_TAG = "runspec_key"
# Set on a run whose test AUC exceeds the Bayes oracle's on the same test set by > 3 DeLong SE.
LEAK_TAG = "leak_suspect"
KIND_TAG, INVOCATION = "kind", "invocation"
PID_TAG, HOST_TAG, START_TAG = "driver_pid", "driver_host", "driver_start"
KILLED_REASON, FAILURE_REASON = "killed_reason", "failure_reason"
KILLED = RunStatus.to_string(RunStatus.KILLED)
# Disk full, quota, read-only file system: fatal for the grid wherever the file was; permission
# or "not a folder" errors: fatal when the path is under the results directory.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
# mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI into the environment, so read the user's
# value once, before any run of ours has set it.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


class StorageError(BenchmarkError):
    """The results directory or the artifact store cannot be written; the message names the path."""


class TrackingUnavailable(BenchmarkError):
    """The tracking store stopped answering (e.g. its server died and could not be restarted)."""


def resolve_tracking_uri(cli_uri: str | None, config_uri: str | None, results_dir: Path) -> str:
    uri = cli_uri or _USER_TRACKING_URI or config_uri
    if not uri:
        ensure_writable(results_dir)
        uri = f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"
    ensure_store(uri)
    return uri


def ensure_store(uri: str) -> None:
    """A new SQLite store is created complete or not at all.  MLflow creates its tables in place,
    and a process killed meanwhile (seen: the local server killed with its driver at start-up)
    left a store that every later start refused ("table ... already exists").  So the tables are
    made in a temporary file, then hard-linked into place (never over a store another process
    created meanwhile)."""
    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    for old in db.parent.glob(f".{db.name}.init-*"):  # left by a process killed while creating one
        pid = old.name.rpartition("-")[2]
        if not pid.isdigit() or not same_process(int(pid), None):
            old.unlink(missing_ok=True)
    tmp = db.with_name(f".{db.name}.init-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp.resolve()}", (db.parent / "mlartifacts").resolve().as_uri())
        store.engine.dispose()
        os.link(tmp, db)
    except FileExistsError:
        pass  # another process created the store first: use it
    except OSError as exc:
        raise StorageError(f"cannot create the MLflow store {db}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it, or raise one :class:`StorageError` naming the path."""
    folder = Path(folder)
    probe = folder / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"cannot write to the results directory {folder.resolve()}: "
                           f"{exc.strerror or exc} ({exc.filename or probe})") from None


def storage_error(exc: OSError, roots: Iterable[Path], what: str = "write") -> StorageError | None:
    """The user-facing error for an OSError that means "the results cannot be written": disk
    full / read-only anywhere, or a permission / not-a-folder error on a path under one of
    ``roots``; else None (e.g. a file that another worker renamed first is not fatal)."""
    path = exc.filename
    under = path is not None and any(within(Path(path), root) for root in roots)
    if exc.errno not in STORAGE_ERRNOS and not (under and exc.errno in PATH_ERRNOS):
        return None
    where = path if path is not None else ", ".join(str(Path(r).resolve()) for r in roots)
    return StorageError(f"cannot {what} {where}: {exc.strerror or exc}")


def within(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root)))
    except ValueError:
        return False
    return True


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def store_dir(uri: str) -> Path | None:
    """The folder a file-based store lives in (the SQLite file's folder), else None (a server)."""
    db = sqlite_path(uri)
    if db is not None:
        return db.parent
    if uri.startswith("file:"):
        return Path(uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):]).parent
    return None


def leaderboard_dir(uri: str, results_dir: Path, explicit: bool) -> Path:
    """Where the leaderboards of store ``uri`` are written: ``results_dir`` when the user chose it,
    else the store's own folder; a server URI with the default results directory is refused, so
    another store's leaderboards never overwrite those of ``results_dir``'s store."""
    own = store_dir(uri)
    if explicit or (own is not None and own.resolve() == Path(results_dir).resolve()):
        return Path(results_dir)
    if own is not None:
        return own
    raise ConfigError(f"the leaderboards of {uri} would overwrite {Path(results_dir) / '<dataset>'}/leaderboard.*, "
                      "which belong to the default store: pass --results-dir DIR for them (or --no-leaderboard)")


def experiment_name(dataset: str) -> str:
    return f"medfusion-{dataset}"


class Tracker:
    def __init__(self, tracking_uri: str, results_dir: Path) -> None:
        self.uri = tracking_uri
        self.results_dir = results_dir
        ensure_store(tracking_uri)
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

    def kill(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, KILLED_REASON, reason[:5000])
        self.client.set_terminated(run_id, KILLED)

    @staticmethod
    def invocation_tags() -> dict[str, str]:
        """The parent run's tags: its kind and its driver process (pid, host, start token)."""
        me = this_process()
        return {KIND_TAG: INVOCATION, PID_TAG: me["pid"], HOST_TAG: me["host"], START_TAG: me["token"]}

    def running_invocations(self, experiment_id: str) -> list:
        return list(self.client.search_runs(
            [experiment_id], filter_string=f"tags.{KIND_TAG} = '{INVOCATION}' and attributes.status = 'RUNNING'",
            max_results=5000))

    def close_stale_parents(self, experiment_id: str) -> tuple[list[str], list[str]]:
        """RUNNING parent runs whose driver is gone: KILLED with ``killed_reason``.  Returns (what
        was closed, what was left alone because it runs on another host), one line each."""
        me = this_process()
        closed, foreign = [], []
        for run in self.running_invocations(experiment_id):
            tags, run_id = run.data.tags, run.info.run_id
            pid, host = tags.get(PID_TAG), tags.get(HOST_TAG)
            if pid is None:
                reason = "no driver pid recorded (a run from before crash-safety tags); its process is presumed gone"
            elif host != me["host"]:
                foreign.append(f"invocation {run_id} of pid {pid} on {host} is RUNNING: left alone "
                               f"(its process cannot be checked from {me['host']})")
                continue
            elif same_process(int(pid), tags.get(START_TAG)):
                continue  # a live driver: another grid on this store
            elif same_process(int(pid), None):
                reason = f"driver pid {pid} on {host} now belongs to another process (start time differs)"
            else:
                reason = f"driver process {pid} on {host} is gone"
            self.kill(run_id, f"{reason}; closed by pid {me['pid']} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
            closed.append(f"invocation {run_id}: {reason}")
        return closed, foreign

    def close_stale(self, experiment_id: str, keys: Iterable[str] | None = None) -> int:
        """Attempts left RUNNING by a killed process (of every key, or of ``keys``): KILLED, unless
        their parent is a live invocation (call :meth:`close_stale_parents` first)."""
        live = {r.info.run_id for r in self.running_invocations(experiment_id)}
        closed = 0
        by_key = self.runs_by_key(experiment_id)
        for key in (by_key if keys is None else keys):
            for run in by_key.get(key, []):
                if run.info.status == "RUNNING" and run.data.tags.get("mlflow.parentRunId") not in live:
                    self.kill(run.info.run_id, "left RUNNING by a process that is gone; closed at the start "
                                               f"of a later invocation ({time.strftime('%Y-%m-%d %H:%M:%S')})")
                    closed += 1
        return closed

    def close_children(self, experiment_id: str, parent_id: str, reason: str) -> int:
        """The RUNNING children of ``parent_id`` (cells in flight when the grid stopped): KILLED."""
        runs = self.client.search_runs([experiment_id], max_results=5000, filter_string=(
            f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'"))
        for run in runs:
            self.kill(run.info.run_id, reason)
        return len(runs)

    def claim(self, experiment_id: str, key: str) -> bool:
        """Just before a cell runs (in whichever process runs it): False if the key already has a
        FINISHED attempt (e.g. a retried Ray task whose first attempt finished), else its stale
        attempts are closed and the caller may start a new one."""
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}'")
        if is_finished(runs):
            return False
        for run in runs:
            if run.info.status == "RUNNING":
                self.kill(run.info.run_id, "superseded by a new attempt of the same cell (a retried task or a "
                                           "resumed grid)")
        return True


def is_finished(runs: Iterable) -> bool:
    """The one resume rule: a cell is done when any attempt of its key FINISHED."""
    return any(r.info.status == "FINISHED" for r in runs)
