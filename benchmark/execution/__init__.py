"""Executing a grid: the local (serial or worker processes) and Ray executors and the driver
(resume, parent run, failures)."""
from __future__ import annotations

from benchmark.execution.driver import GridOutcome, run_grid
from benchmark.execution.executors import Executor, LocalExecutor, RayExecutor
from benchmark.execution.interrupts import deferred, exit_status, handle_interrupts
from benchmark.execution.local_pool import LocalPoolExecutor
from benchmark.execution.publish import publish_leaderboards, publish_suite

__all__ = ["Executor", "GridOutcome", "LocalExecutor", "LocalPoolExecutor", "RayExecutor", "deferred", "exit_status",
           "handle_interrupts", "publish_leaderboards", "publish_suite", "run_grid"]
