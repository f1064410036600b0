"""Executors: how the grid's RunSpecs are run — serially here, or as Ray tasks.

Both call the same :class:`~benchmark.cells.runner.CellRunner`, which applies the resume rule of
``benchmark.tracking`` just before a cell runs: a cell already FINISHED in MLflow is skipped
(whichever executor ran it), and stale attempts of its key are closed as KILLED.  So a killed
driver or worker loses only the cells in flight, and a retried Ray task never produces a second
FINISHED record.

Failures, the same with both executors: a cell that raises (e.g. a non-finite loss) is FAILED with
the reason and reported, and the grid goes on; a :class:`~benchmark.tracking.store.StorageError`
(results directory unwritable, disk full) stops the grid with that one message.  A Ray task is
retried (``execution.retries``) when its worker died or its cell raised, except for failures that
would happen again (a non-finite loss, a storage error).  The optional ``monitor`` is the driver's
check of the tracking store:
called after each cell (and every few seconds with Ray), it restarts a dead local MLflow server
(:class:`TrackingMonitor` in ``benchmark.execution.driver``) and returns how many restarts there
were; a Ray cell that failed across a restart is resubmitted.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol, Sequence

from benchmark.cells.faults import FAULT_ENV
from benchmark.cells.runner import CellRunner
from benchmark.execution.interrupts import install as install_interrupt_handlers
from benchmark.grid.spec import RunSpec
from benchmark.tracking.store import StorageError, TrackingUnavailable
from core.errors import ConfigError

OnDone = Callable[[RunSpec, "str | None"], None]  # error message, or None for success
Monitor = Callable[[bool], int]  # (a cell just failed?) -> restarts of the tracking server so far
FATAL = (StorageError, TrackingUnavailable)


class Executor(Protocol):
    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone,
                monitor: Monitor | None = None) -> None: ...


def no_monitor(failed: bool) -> int:
    return 0


class Retry(Exception):
    """A Ray cell's exception that is worth retrying (the message is the original's)."""


NO_RETRY = (FloatingPointError, *FATAL)  # deterministic: a retry would fail the same way


def cause(exc: BaseException) -> BaseException:
    """The cell's own exception inside a Ray task error."""
    inner = getattr(exc, "cause", None)
    return inner if isinstance(inner, BaseException) else exc


def message(exc: BaseException) -> str:
    exc = cause(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, Retry) else f"{type(exc).__name__}: {text}"


class LocalExecutor:
    """Serial execution in this process (the default)."""

    def __init__(self, progress: Any = None) -> None:
        self.progress = progress

    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone,
                monitor: Monitor | None = None) -> None:
        monitor = monitor or no_monitor
        for spec in specs:
            try:
                runner(spec, self.progress)
            except (KeyboardInterrupt, *FATAL):
                raise
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                monitor(True)  # a store that stopped answering stops the grid here
                on_done(spec, message(exc))
            else:
                on_done(spec, None)


WORKER_RUNNERS: dict[int, CellRunner] = {}


def run_remote(runner: CellRunner, spec: RunSpec) -> str:
    # Ray reuses worker processes: keep one runner (and its prepared data) per process.
    cached = WORKER_RUNNERS.get(id(type(runner)))
    if cached is None or cached.__getstate__() != runner.__getstate__():
        WORKER_RUNNERS[id(type(runner))] = runner
        cached = runner
    try:
        return cached(spec)
    except NO_RETRY:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a transient file race between two workers
        raise Retry(message(exc)) from exc


class RayExecutor:
    """Each RunSpec is one Ray task with declared resources; failures are retried then reported."""

    POLL_SECONDS = 2.0

    def __init__(self, workers: int, address: str | None = None, retries: int = 2,
                 gpus_per_task: float = 0.0, threads_per_worker: int = 1) -> None:
        self.workers = workers
        self.address = address
        self.retries = retries
        self.gpus_per_task = gpus_per_task
        self.threads_per_worker = threads_per_worker

    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone,
                monitor: Monitor | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray: Ray is not installed; pip install -e '.[ray]'") from None
        monitor = monitor or no_monitor
        env = {"OMP_NUM_THREADS": str(self.threads_per_worker), "MLFLOW_DISABLE_TELEMETRY": "true"}
        for key in (*FAULT_ENV, "PYTHONPATH"):
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
        install_interrupt_handlers()  # ray.init replaced the SIGTERM handler
        runner.threads = self.threads_per_worker
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task, max_retries=self.retries,
                            retry_exceptions=[Retry])(run_remote)
        resubmits = {spec.key(): 0 for spec in specs}
        try:
            pending = {remote.remote(runner, spec): (spec, monitor(False)) for spec in specs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.POLL_SECONDS)
                if not ready:
                    monitor(False)  # a dead server is restarted while the workers' clients retry
                    continue
                for ref in ready:
                    spec, generation = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except FATAL as exc:
                        raise cause(exc) from None
                    except Exception as exc:  # noqa: BLE001 - retries exhausted: report, go on
                        now = monitor(True)
                        if now != generation and resubmits[spec.key()] < self.retries \
                                and not isinstance(cause(exc), NO_RETRY):
                            resubmits[spec.key()] += 1  # it failed while the tracking server was down
                            pending[remote.remote(runner, spec)] = (spec, now)
                            continue
                        on_done(spec, message(exc))
                    else:
                        on_done(spec, None)
                        monitor(False)
        finally:
            if started_here:
                ray.shutdown()
