"""Running a grid of RunSpecs: resume, one parent MLflow run per invocation, progress, failures.

Cells already FINISHED in MLflow are skipped (the rule of ``benchmark.tracking``), so an
interrupted grid continues where it stopped.  With the Ray executor and more than one worker on
the default SQLite store, a local MLflow server is started for the duration of the grid so that
SQLite has one writer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import mlflow
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmark.cells.runner import CellRunner
from benchmark.config.loading import dump_config
from benchmark.config.schema import BenchmarkConfig
from benchmark.execution.executors import Executor, LocalExecutor, RayExecutor
from benchmark.grid.spec import RunSpec
from benchmark.tracking.server import LocalMlflowServer
from benchmark.tracking.store import Tracker, resolve_tracking_uri


@dataclass
class GridOutcome:
    tracking_uri: str                       # the store the runs went to (never the temporary server)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def make_executor(cfg: BenchmarkConfig, progress: Progress) -> Executor:
    e = cfg.execution
    if e.executor == "ray":
        return RayExecutor(e.workers, e.ray_address, e.retries, e.gpus_per_task, e.threads_per_worker)
    return LocalExecutor(progress)


def run_grid(cfg: BenchmarkConfig, grid: Sequence[RunSpec], console: Console) -> GridOutcome:
    """Run every unfinished cell of ``grid``; failures are reported, never stop the others."""
    results_dir = Path(cfg.results_dir)
    uri = resolve_tracking_uri(None, cfg.tracking_uri, results_dir)
    server = None
    if cfg.execution.executor == "ray" and cfg.execution.workers > 1 and uri.startswith("sqlite:"):
        # Many processes never write one SQLite file: they go through a local tracking server.
        server = LocalMlflowServer(results_dir, backend_uri=uri).start()
        console.print(f"started MLflow tracking server {server.uri} (backend {uri})")
    try:
        outcome = execute(cfg, grid, server.uri if server else uri, console)
    finally:
        if server is not None:
            server.stop()
    outcome.tracking_uri = uri
    return outcome


def execute(cfg: BenchmarkConfig, grid: Sequence[RunSpec], uri: str, console: Console) -> GridOutcome:
    tracker = Tracker(uri, Path(cfg.results_dir))
    exp_id = tracker.experiment_id(cfg.dataset.name)
    finished = tracker.finished_keys(exp_id)
    tracker.close_stale(exp_id)  # attempts killed with an earlier process
    todo = [s for s in grid if s.key() not in finished]
    console.print(f"[bold]{cfg.dataset.name}[/]: {len(grid)} cells, {len(grid) - len(todo)} already finished, "
                  f"{len(todo)} to run  (MLflow: {tracker.uri})")
    outcome = GridOutcome(uri)
    started = time.time()
    if todo:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}",
                              tags={"kind": "invocation"}) as parent, \
                Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), console=console, transient=False) as progress:
            mlflow.log_text(dump_config(cfg), "config.yaml")
            grid_task = progress.add_task(f"grid ({cfg.execution.executor})", total=len(todo))
            runner = CellRunner(cfg.dataset, cfg.results_dir, tracker.uri, exp_id, parent.info.run_id,
                                threads=cfg.training.threads)

            def on_done(spec: RunSpec, error: str | None) -> None:
                progress.update(grid_task, description=f"{spec.method:<16} rate={spec.missing.rate:g} seed={spec.seed}")
                progress.advance(grid_task)
                if error is not None:
                    outcome.failures.append(f"{spec.label()}: {error}")
                    console.print(f"[red]failed[/] {spec.label()}: {error}")

            make_executor(cfg, progress).execute(todo, runner, on_done)
    outcome.seconds = time.time() - started
    console.print(f"grid done in {outcome.seconds:.0f} s")
    return outcome
