"""Executors: how the grid's RunSpecs are run — serially here, or as Ray tasks.

Both call the same :class:`~benchmark.cells.runner.CellRunner`, which applies the resume rule of
``benchmark.tracking`` just before a cell runs: a cell already FINISHED in MLflow is skipped
(whichever executor ran it), and stale attempts of its key are closed as KILLED.  So a killed
driver or worker loses only the cells in flight, and a retried Ray task never produces a second
FINISHED record.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol, Sequence

from benchmark.cells.runner import CellRunner
from benchmark.grid.spec import RunSpec
from core.errors import ConfigError

OnDone = Callable[[RunSpec, "str | None"], None]  # error message, or None for success


class Executor(Protocol):
    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone) -> None: ...


class LocalExecutor:
    """Serial execution in this process (the default)."""

    def __init__(self, progress: Any = None) -> None:
        self.progress = progress

    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone) -> None:
        for spec in specs:
            try:
                runner(spec, self.progress)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                on_done(spec, f"{type(exc).__name__}: {exc}")
            else:
                on_done(spec, None)


WORKER_RUNNERS: dict[int, CellRunner] = {}


def run_remote(runner: CellRunner, spec: RunSpec) -> str:
    # Ray reuses worker processes: keep one runner (and its prepared data) per process.
    cached = WORKER_RUNNERS.get(id(type(runner)))
    if cached is None or cached.__getstate__() != runner.__getstate__():
        WORKER_RUNNERS[id(type(runner))] = runner
        cached = runner
    return cached(spec)


class RayExecutor:
    """Each RunSpec is one Ray task with declared resources; failures are retried then reported."""

    def __init__(self, workers: int, address: str | None = None, retries: int = 2,
                 gpus_per_task: float = 0.0, threads_per_worker: int = 1) -> None:
        self.workers = workers
        self.address = address
        self.retries = retries
        self.gpus_per_task = gpus_per_task
        self.threads_per_worker = threads_per_worker

    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray: Ray is not installed; pip install -e '.[ray]'") from None
        env = {"OMP_NUM_THREADS": str(self.threads_per_worker), "MLFLOW_DISABLE_TELEMETRY": "true"}
        for key in ("MEDFUSION_FAIL_ONCE", "MEDFUSION_FAIL_DIR", "PYTHONPATH"):
            if key in os.environ:
                env[key] = os.environ[key]
        init_kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                                       "log_to_driver": False, "ignore_reinit_error": True}
        if self.address:
            init_kwargs["address"] = self.address
        else:
            init_kwargs["num_cpus"] = self.workers
        started_here = not ray.is_initialized()
        ray.init(**init_kwargs)
        runner.threads = self.threads_per_worker
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task, max_retries=self.retries,
                            retry_exceptions=True)(run_remote)
        try:
            pending = {remote.remote(runner, spec): spec for spec in specs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    spec = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - retries exhausted: report, go on
                        on_done(spec, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    else:
                        on_done(spec, None)
        finally:
            if started_here:
                ray.shutdown()
