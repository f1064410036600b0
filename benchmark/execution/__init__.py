"""Executing a grid: the local and Ray executors and the driver (resume, parent run, failures)."""
from __future__ import annotations

from benchmark.execution.driver import GridOutcome, run_grid
from benchmark.execution.executors import Executor, LocalExecutor, RayExecutor

__all__ = ["Executor", "GridOutcome", "LocalExecutor", "RayExecutor", "run_grid"]
