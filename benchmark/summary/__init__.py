"""Leaderboards built from the MLflow store alone (orchestration layer below the CLI).

Reads the child runs of each dataset's experiment and the ``predictions.npz`` artifacts they
logged; nothing is retrained or re-predicted, only statistics are computed.  Modules, in
dependency order:

* ``stats``: intervals, paired tests, DeLong, robustness area and drop, ranking (pure numbers);
* ``load``: runs read from MLflow and normalised, the latest attempt per RunSpec key;
* ``model``: rows, cells and (pattern, protocol) sections of the expected grid;
* ``predictions``: the logged test predictions, read once per build;
* ``compare``: one row against a reference at one rate (t-test + DeLong);
* ``document``, ``formatting``: what is shown (blocks, formatted cells, figure descriptions);
* ``tables``, ``provenance``, ``index``, ``assemble``: the documents of a dataset and of the index;
* ``headline``, ``page_data``: the ranking and per-rate verdicts, the interactive page's JSON payload;
* ``render``, ``page``, ``plots``, ``heatmap``: Markdown / HTML page / rich output and the figures;
* ``build``: the files written for each dataset and ``results/README.md``;
* ``contrast``, ``suite_runs``, ``claims``, ``scenarios``: a suite's files (``--suite scenarios``):
  AUC differences of any two sides (e.g. against the oracle's independent-evidence ceiling), the
  runs of each suite entry, the claims table, and the per-entry leaderboards + ``summary.*``.

Trust rules: every expected cell is shown (missing seeds counted with the reason, never dropped);
results of different configs are never averaged together; output depends only on the store, so
rebuilding is byte-identical.
"""
from __future__ import annotations

# benchmark.tracking sets MLflow's environment (telemetry off) before anything imports mlflow.
import benchmark.tracking  # noqa: F401  isort: skip
from benchmark.summary.assemble import DatasetReport, build_report
from benchmark.summary.build import build_leaderboards, render_console, render_summary, write_index, write_report
from benchmark.summary.load import datasets_in_store, load_all_runs, load_runs

__all__ = ["DatasetReport", "build_leaderboards", "build_report", "datasets_in_store", "load_all_runs",
           "load_runs", "render_console", "render_summary", "write_index", "write_report"]
