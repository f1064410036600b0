"""Executors: how the grid's RunSpecs are run — serially here, or as Ray tasks.

The resume logic lives in one place, :meth:`CellRunner.__call__`: a cell already FINISHED in
MLflow is skipped (whichever executor ran it), and attempts of the same key left RUNNING by a
killed process are closed as KILLED before a new attempt starts.  So a killed driver or worker
loses only the cells in flight, and a retried Ray task never produces a second FINISHED record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from benchmark.runspec import RunSpec

OnDone = Callable[[RunSpec, "str | None"], None]  # error message, or None for success


class Executor(Protocol):
    def execute(self, specs: Sequence[RunSpec], runner: "CellRunner", on_done: OnDone) -> None: ...


@dataclass
class CellRunner:
    """Everything a process needs to run cells; picklable, so Ray can ship it to workers.

    Data are prepared once per (pattern, protocol, rate, seed) and reused by every method of
    that group within a process.
    """

    cfg: Any                                   # BenchmarkConfig
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    cell_configs: dict[str, Any] = field(default_factory=dict)   # method -> its config (tuned runs)
    cell_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> extra run tags
    threads: int = 0
    _state: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_state"] = {}
        return state

    def _dataset(self):
        if "dataset" not in self._state:
            from datasets import create_dataset
            cfg = self.cfg
            dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
            self._state["dataset"] = dataset
            self._state["table"] = dataset.load_table()
            self._state["oracle"] = dataset.oracle()
        return self._state["dataset"], self._state["table"], self._state["oracle"]

    def _prepared(self, spec: RunSpec):
        from pathlib import Path

        from benchmark.data import prepare_data
        from benchmark.masks import MissingSpec
        from benchmark.run import _oracle_reference
        group = (spec.pattern, spec.protocol, spec.rate, spec.seed)
        if self._state.get("group") != group:  # one group in memory at a time
            dataset, table, oracle = self._dataset()
            mspec = MissingSpec(spec.pattern, spec.rate, spec.protocol, self.cfg.missing.image_share)  # type: ignore[arg-type]
            data = prepare_data(dataset, table, mspec, spec.seed, Path(self.cfg.results_dir) / "masks")
            reference = _oracle_reference(oracle, data, mspec, spec.seed) if oracle is not None else {}
            self._state.update(group=group, data=data, reference=reference)
        return self._state["data"], self._state["reference"]

    def __call__(self, spec: RunSpec, progress: Any = None) -> str:
        """Run one cell unless already finished; returns "done" or "skipped"."""
        import mlflow
        import torch

        from benchmark.run import _run_cell
        from benchmark.runspec import ORACLE_METHOD
        from benchmark.tracking import KEY_TAG, Tracker

        if self.threads:
            torch.set_num_threads(self.threads)
        mlflow.set_tracking_uri(self.tracking_uri)
        tracker = Tracker(self.tracking_uri, __import__("pathlib").Path(self.cfg.results_dir))
        key = spec.key()
        attempts = tracker.client.search_runs([self.experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}'")
        if any(r.info.status == "FINISHED" for r in attempts):
            return "skipped"
        for run in attempts:
            if run.info.status == "RUNNING":
                tracker.client.set_terminated(run.info.run_id, "KILLED")
        data, reference = self._prepared(spec)
        oracle = self._state["oracle"] if spec.method == ORACLE_METHOD else None
        cfg = self.cell_configs.get(spec.method, self.cfg)
        _run_cell(cfg, spec, data, reference, self.parent_run_id, self.experiment_id, progress, oracle,
                  extra_tags=self.cell_tags.get(spec.method, {"tuned": "false"}))
        return "done"


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


_WORKER_RUNNERS: dict[int, CellRunner] = {}


def _run_remote(runner: CellRunner, spec: RunSpec) -> str:
    # Ray reuses worker processes: keep one runner (and its prepared data) per process.
    cached = _WORKER_RUNNERS.get(id(type(runner)))
    if cached is None or cached.__getstate__() != runner.__getstate__():
        _WORKER_RUNNERS[id(type(runner))] = runner
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
            from benchmark.errors import ConfigError
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
                            retry_exceptions=True)(_run_remote)
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
