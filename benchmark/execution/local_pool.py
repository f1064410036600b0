"""Several cells at once on one machine: ``execution.executor: local`` with ``workers: N > 1``.

N worker processes (``multiprocessing``, *spawn* context: a fresh interpreter each, no forked
torch or MLflow state) run the same :class:`~benchmark.cells.runner.CellRunner` as the serial
path, each with ``execution.threads_per_worker`` torch threads, all on the configured device (the
CPU, or the one GPU: on CUDA choose N by GPU memory, every worker holds its own model, batches and
CUDA context).  The driver hands out one cell at a time over a pipe per worker:

* **data reuse**: a worker keeps the (missing spec, seed) group it started, so the group's data
  are prepared once per worker that runs it; a worker with nothing left in its group takes the
  next group nobody has, then, near the end, cells of the group with the most cells left (whose
  data it then prepares again: the price of not idling);
* **resume**: the runner claims each cell in MLflow just before it runs (``Tracker.claim``), as
  with Ray; the driver skipped the FINISHED ones already;
* **failures**: a cell that raises is FAILED by its worker and reported with its message, the grid
  goes on; a ``StorageError``/``TrackingUnavailable`` stops the grid; a worker that dies (killed,
  out of memory) has its cell closed as KILLED and reported, and is replaced; a cell that failed
  while the driver restarted the local MLflow server is resubmitted (``execution.retries``);
* **interrupts**: workers ignore SIGINT (Ctrl-C is the driver's); when the grid stops for any
  reason they are terminated (SIGTERM, then SIGKILL) before the driver closes the cells in flight
  as KILLED (``Tracker.close_children``).  They die with the driver (parent-death signal) and carry
  the invocation's marker variable, so the driver's watchdog stops them too.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from benchmark.cells.runner import CellRunner
from benchmark.execution.executors import FATAL, NO_RETRY, Monitor, OnDone, message, no_monitor
from benchmark.grid.spec import RunSpec
from benchmark.tracking.processes import die_with_parent, terminate
from benchmark.tracking.store import KEY_TAG, StorageError, Tracker, TrackingUnavailable

FATAL_BY_NAME = {cls.__name__: cls for cls in FATAL}
POLL_SECONDS = 2.0


def start_resource_tracker() -> None:
    """Spawned children need multiprocessing's resource tracker; start it before the driver's
    watchdog, which would otherwise count it among the grid's processes and kill it at the end of
    every grid (it ignores SIGTERM: an 8 s wait, then a warning at the next spawn).  It exits by
    itself when the driver does."""
    resource_tracker.ensure_running()


def group_of(spec: RunSpec) -> Hashable:
    return (spec.missing, spec.seed)


def worker_main(conn: Connection, runner: CellRunner, parent: int) -> None:
    """One worker process: run the cells it is sent until told to stop (None) or the pipe closes."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the driver decides
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        try:
            reply: tuple = ("done", runner(spec))
        except FATAL as exc:
            reply = ("fatal", type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - FAILED in MLflow by the runner; reported by the driver
            reply = ("failed", message(exc), isinstance(exc, NO_RETRY))
        conn.send(reply)


class Dispatch:
    """Which cell a free worker runs next (see the module docstring: a group stays with a worker)."""

    def __init__(self, specs: Sequence[RunSpec]) -> None:
        self.groups: OrderedDict[Hashable, list[RunSpec]] = OrderedDict()
        for spec in specs:
            self.groups.setdefault(group_of(spec), []).append(spec)
        self.owner: dict[Hashable, int] = {}  # group -> the worker that started it

    def __bool__(self) -> bool:
        return any(self.groups.values())

    def push(self, spec: RunSpec) -> None:
        self.groups.setdefault(group_of(spec), []).insert(0, spec)

    def next_for(self, worker: int, current: Hashable | None) -> RunSpec | None:
        if current is not None and self.groups.get(current):
            return self.groups[current].pop(0)
        free = [g for g, cells in self.groups.items() if cells and g not in self.owner]
        if free:
            self.owner[free[0]] = worker
            return self.groups[free[0]].pop(0)
        busiest = max(self.groups, key=lambda g: len(self.groups[g]), default=None)
        if busiest is None or not self.groups[busiest]:
            return None
        return self.groups[busiest].pop()  # from the end: its owner goes on from the front


@dataclass
class Worker:
    index: int
    process: Any
    conn: Connection
    spec: RunSpec | None = None      # the cell in flight
    group: Hashable | None = None    # the group whose data it holds
    generation: int = 0              # tracking-server restarts when the cell was sent


class LocalPoolExecutor:
    """``workers`` processes on this machine sharing its device; the grid semantics of the serial path."""

    def __init__(self, workers: int, threads_per_worker: int = 1, retries: int = 2) -> None:
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.retries = retries
        self.context = multiprocessing.get_context("spawn")

    def start(self, index: int, runner: CellRunner) -> Worker:
        ours, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(target=worker_main, args=(theirs, runner, os.getpid()),
                                       name=f"medfusion-worker-{index}")
        process.start()
        theirs.close()
        return Worker(index, process, ours)

    def execute(self, specs: Sequence[RunSpec], runner: CellRunner, on_done: OnDone,
                monitor: Monitor | None = None) -> None:
        monitor = monitor or no_monitor
        runner.threads = self.threads_per_worker
        dispatch = Dispatch(specs)
        resubmits = {spec.key(): 0 for spec in specs}
        workers: list[Worker] = []
        try:
            for index in range(min(self.workers, len(specs))):
                workers.append(self.start(index, runner))  # one by one: an interrupt stops those started
            while True:
                for worker in workers:
                    if worker.spec is None and dispatch:
                        self.send(worker, dispatch.next_for(worker.index, worker.group), monitor(False))
                busy = [w for w in workers if w.spec is not None]
                if not busy:
                    break
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_SECONDS)
                if not ready:
                    monitor(False)  # a dead server is restarted while the workers' clients retry
                    continue
                for worker in busy:
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self.collect(worker, runner, on_done, monitor, dispatch, resubmits, workers)
        finally:
            self.stop(workers)

    @staticmethod
    def send(worker: Worker, spec: RunSpec | None, generation: int) -> None:
        if spec is None:
            return
        worker.spec, worker.generation = spec, generation
        try:
            worker.conn.send(spec)
        except OSError:
            pass  # the process is gone: its sentinel is ready, collect() reports the cell

    def collect(self, worker: Worker, runner: CellRunner, on_done: OnDone, monitor: Monitor, dispatch: Dispatch,
                resubmits: dict[str, int], workers: list[Worker]) -> None:
        spec = worker.spec
        assert spec is not None
        try:
            reply = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            reply = None
        if reply is None:  # the process died with the cell
            worker.process.join(timeout=5)
            why = f"the worker process died (exit status {worker.process.exitcode})"
            close_attempt(runner, spec, why)
            worker.conn.close()
            if dispatch:  # a fresh process takes its place
                workers[workers.index(worker)] = self.start(worker.index, runner)
            else:
                workers.remove(worker)
            monitor(True)
            on_done(spec, why)
            return
        worker.spec = None
        worker.group = group_of(spec)
        if reply[0] == "done":
            on_done(spec, None)
            monitor(False)
        elif reply[0] == "fatal":
            raise FATAL_BY_NAME.get(reply[1], StorageError)(reply[2])
        else:
            now = monitor(True)  # a store that stopped answering stops the grid here
            if now != worker.generation and resubmits[spec.key()] < self.retries and not reply[2]:
                resubmits[spec.key()] += 1  # it failed while the tracking server was down
                dispatch.push(spec)
                return
            on_done(spec, reply[1])

    @staticmethod
    def stop(workers: list[Worker]) -> None:
        """Normal end: each worker is told to exit; otherwise (an interrupt, a fatal error) the
        workers are terminated, then the driver closes their cells as KILLED."""
        clean = all(w.spec is None for w in workers)
        if clean:
            for worker in workers:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            for worker in workers:
                worker.process.join(timeout=30)
        alive = [w.process.pid for w in workers if w.process.is_alive()]
        if alive:
            terminate(alive, grace=5.0)
        for worker in workers:
            worker.process.join(timeout=5)
            worker.conn.close()


def close_attempt(runner: CellRunner, spec: RunSpec, why: str) -> None:
    """The RUNNING record that a dead worker left for ``spec``: KILLED with the reason."""
    try:
        tracker = Tracker(runner.tracking_uri, Path(runner.results_dir))
        runs = tracker.client.search_runs([runner.experiment_id], filter_string=(
            f"tags.{KEY_TAG} = '{spec.key()}' and attributes.status = 'RUNNING'"))
        for run in runs:
            tracker.kill(run.info.run_id, why)
    except TrackingUnavailable:
        raise
    except Exception:  # noqa: BLE001 - the store is down: the next claim or start closes it
        pass
