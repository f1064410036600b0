"""The cell runner: one RunSpec trained, evaluated and logged as an MLflow child run."""
from __future__ import annotations

from benchmark.cells.evaluate import evaluate_method, oracle_reference, scenario_presence
from benchmark.cells.runner import CellRunner, run_cell

__all__ = ["CellRunner", "evaluate_method", "oracle_reference", "run_cell", "scenario_presence"]
