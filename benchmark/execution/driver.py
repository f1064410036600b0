"""Running a grid of RunSpecs: resume, one parent MLflow run per invocation, progress, failures.

Cells already FINISHED in MLflow are skipped (the rule of ``benchmark.tracking``), so an
interrupted grid continues where it stopped.  With more than one worker (Ray, or local worker
processes: ``benchmark.execution.local_pool``) on the default SQLite store, a local MLflow server
is started for the duration of the grid so that SQLite has one writer.

Crash safety (what each way of dying leaves behind):

* on every start, parent runs left RUNNING by a driver that is gone and their children are
  closed as KILLED with the reason (``Tracker.close_stale_parents``, ``close_stale``);
* the parent run records its driver (pid, host, start token) and ends FINISHED, KILLED
  (Ctrl-C / SIGTERM: the cells in flight are closed as KILLED too) or FAILED with the reason;
* nothing the grid starts outlives the driver: the local MLflow server has a parent-death signal,
  and a watchdog stops every process carrying the invocation's marker variable (Ray's processes,
  agents and workers too) when the driver dies; if the server dies mid-grid it is restarted on
  the same port (:class:`TrackingMonitor`), or the grid stops with one message;
* an unwritable results directory stops the grid before anything runs, a full disk at the
  first artifact that cannot be written (``StorageError``, naming the path).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import mlflow
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmark.cells.runner import CellRunner
from benchmark.config.loading import dump_config
from benchmark.config.schema import BenchmarkConfig
from benchmark.execution.executors import Executor, LocalExecutor, RayExecutor, message
from benchmark.execution.interrupts import as_interrupted
from benchmark.execution.local_pool import LocalPoolExecutor, start_resource_tracker
from benchmark.grid.spec import RunSpec
from benchmark.tracking.processes import INVOCATION_ENV, start_watchdog, stop_watchdog
from benchmark.tracking.runs import tracked_run
from benchmark.tracking.server import LocalMlflowServer, healthy
from benchmark.tracking.store import (KEY_TAG, LEAK_TAG, StorageError, Tracker, TrackingUnavailable, ensure_writable,
                                      resolve_tracking_uri)


@dataclass
class GridOutcome:
    tracking_uri: str                       # the store the runs went to (never the temporary server)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    server_restarts: int = 0
    leaks: list[str] = field(default_factory=list)  # runs flagged by the leak guard


class TrackingMonitor:
    """Called by the executors after each cell (and every few seconds with Ray): our own MLflow
    server is restarted if it died; another tracking server that stopped answering after a failed
    cell stops the grid (:class:`TrackingUnavailable`).  Returns the number of restarts so far."""

    def __init__(self, server: LocalMlflowServer | None, uri: str, console: Console) -> None:
        self.server, self.uri, self.console = server, uri, console

    def __call__(self, failed: bool) -> int:
        if self.server is not None:
            if self.server.ensure_running(probe=failed):
                self.console.print(f"[yellow]the MLflow server stopped mid-grid: restarted on {self.server.uri}[/] "
                                   f"(restart {self.server.restarts}; log: {self.server.log_file})")
            return self.server.restarts
        if failed and self.uri.startswith(("http://", "https://")) and not healthy(self.uri, timeout=10):
            raise TrackingUnavailable(f"the tracking server {self.uri} does not answer; finished cells are kept: "
                                      "rerun the same command once it is back")
        return 0


def make_executor(cfg: BenchmarkConfig, progress: Progress) -> Executor:
    e = cfg.execution
    if e.executor == "ray":
        return RayExecutor(e.workers, e.ray_address, e.retries, e.gpus_per_task, e.threads_per_worker)
    if e.workers > 1:  # N worker processes sharing this machine's device
        return LocalPoolExecutor(e.workers, e.threads_per_worker, e.retries)
    return LocalExecutor(progress)  # workers: 1, serial in this process


def run_grid(cfg: BenchmarkConfig, grid: Sequence[RunSpec], console: Console) -> GridOutcome:
    """Run every unfinished cell of ``grid``; failures are reported, never stop the others."""
    results_dir = Path(cfg.results_dir)
    ensure_writable(results_dir)  # one clear error before anything runs
    uri = resolve_tracking_uri(None, cfg.tracking_uri, results_dir)
    if uri.startswith("sqlite:"):
        ensure_writable(results_dir / "mlartifacts")
    server = None
    if cfg.execution.workers > 1 and uri.startswith("sqlite:"):
        # Many processes (Ray tasks or local workers) never write one SQLite file: they go through
        # a local tracking server.
        server = LocalMlflowServer(results_dir, backend_uri=uri)
        # Through a server, MLflow prints a "View run ... at: URL" line per run to stdout; the
        # progress display and the leaderboard say what a user needs (workers inherit this).
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if cfg.execution.executor == "local" and cfg.execution.workers > 1:
        start_resource_tracker()  # before the watchdog, which would count it as the grid's
    # Everything started from here on carries the marker; the watchdog stops it if this process dies.
    previous = os.environ.get(INVOCATION_ENV)
    os.environ[INVOCATION_ENV] = uuid.uuid4().hex
    watchdog = start_watchdog(INVOCATION_ENV, os.environ[INVOCATION_ENV])
    try:
        if server is not None:
            server.start()
            for note in server.notes:
                console.print(note, markup=False)
            console.print(f"MLflow tracking server {server.uri} (backend {uri})")
        outcome = execute(cfg, grid, server.uri if server else uri, console, TrackingMonitor(server, uri, console))
    finally:
        if server is not None:
            server.stop()
        stop_watchdog(watchdog)
        if previous is None:
            os.environ.pop(INVOCATION_ENV, None)
        else:
            os.environ[INVOCATION_ENV] = previous
    outcome.tracking_uri = uri
    return outcome


def execute(cfg: BenchmarkConfig, grid: Sequence[RunSpec], uri: str, console: Console,
            monitor: TrackingMonitor | None = None) -> GridOutcome:
    tracker = Tracker(uri, Path(cfg.results_dir))
    exp_id = tracker.experiment_id(cfg.dataset.name)
    closed, foreign = tracker.close_stale_parents(exp_id)  # invocations killed with their driver
    for line in closed + foreign:
        console.print(line, markup=False)
    finished = tracker.finished_keys(exp_id)
    tracker.close_stale(exp_id)  # attempts killed with an earlier process
    todo = [s for s in grid if s.key() not in finished]
    console.print(f"[bold]{cfg.dataset.name}[/]: {len(grid)} cells, {len(grid) - len(todo)} already finished, "
                  f"{len(todo)} to run  (MLflow: {tracker.uri})")
    outcome = GridOutcome(uri)
    started = time.time()
    if todo:
        with tracked_run(exp_id, f"benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}", tracker.invocation_tags()) \
                as parent, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=console, transient=False) as progress:
            try:
                mlflow.log_text(dump_config(cfg), "config.yaml")
            except OSError as exc:
                raise StorageError(f"cannot write the artifact config.yaml under {mlflow.get_artifact_uri()}: "
                                   f"{exc.strerror or exc} ({exc.filename})") from exc
            grid_task = progress.add_task(f"grid ({cfg.execution.executor})", total=len(todo))
            runner = CellRunner(cfg.dataset, cfg.results_dir, tracker.uri, exp_id, parent.info.run_id,
                                threads=cfg.training.threads)

            def on_done(spec: RunSpec, error: str | None) -> None:
                progress.update(grid_task, description=f"{spec.method:<16} rate={spec.missing.rate:g} seed={spec.seed}")
                progress.advance(grid_task)
                if error is not None:
                    outcome.failures.append(f"{spec.label()}: {error}")
                    console.print(f"[red]failed[/] {escape(spec.label())}: {escape(error)}")

            try:
                make_executor(cfg, progress).execute(todo, runner, on_done, monitor)
            except TrackingUnavailable:
                raise  # nothing can be written: the next start closes what is left RUNNING
            except BaseException as exc:  # the cells in flight (Ray or local workers) go down with the grid
                if isinstance(exc, KeyboardInterrupt):
                    exc = as_interrupted(exc)
                why = f"interrupted: {exc}" if isinstance(exc, KeyboardInterrupt) else \
                    f"the grid stopped: {message(exc)}"
                try:
                    tracker.close_children(exp_id, parent.info.run_id, why)
                except Exception:  # noqa: BLE001 - the store went away: the next start closes them
                    pass
                raise exc
    outcome.seconds = time.time() - started
    outcome.server_restarts = monitor.server.restarts if monitor is not None and monitor.server is not None else 0
    console.print(f"grid done in {outcome.seconds:.0f} s")
    outcome.leaks = leak_suspects(tracker, exp_id, {s.key() for s in grid})
    for line in outcome.leaks:
        console.print(f"[bold red]warning: possible test leakage[/] {escape(line)}")
    return outcome


def leak_suspects(tracker: Tracker, exp_id: str, keys: set[str]) -> list[str]:
    """The grid's finished runs the leak guard tagged (test AUC above Bayes + 3 SE)."""
    runs = tracker.client.search_runs([exp_id], filter_string=f"tags.{LEAK_TAG} = 'true'")
    return sorted(f"{r.info.run_name}: {r.data.tags.get(f'{LEAK_TAG}_reason', '')}" for r in runs
                  if r.data.tags.get(KEY_TAG) in keys and r.info.status == "FINISHED")
