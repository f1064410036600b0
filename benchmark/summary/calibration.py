"""The calibration table of a section and the calibration line of the leaderboard header.

Why a table of its own: AUC only says how well a method ranks; whether its probabilities can be
read as probabilities (a clinician's threshold, a risk score) is what ECE, the Brier score and the
log loss measure.  Every method gets the same post-hoc step before it is scored
(``evaluation.calibration``, ``core.calibration``), and the header says which one the rows used.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from benchmark.summary.document import Block, Cell, Paragraph, TableView
from benchmark.summary.formatting import MISSING, format_cell, rate_text, row_cells
from benchmark.summary.load import as_text
from benchmark.summary.model import CellStat, Row, Section

# (logged metric of the configured test mask, column label); lower is better for all three.
CALIBRATION_COLUMNS: tuple[tuple[str, str], ...] = (("test_ece", "ECE"), ("test_brier", "Brier"),
                                                    ("test_log_loss", "log loss"))
NOT_RECORDED = "not recorded"


def calibration_line(runs: pd.DataFrame) -> str:
    """The header line: which ``calibration`` the method rows used, with the methods of each."""
    methods = runs[~runs["is_reference"]] if "is_reference" in runs else runs
    column = methods["calibration"] if "calibration" in methods else pd.Series([NOT_RECORDED] * len(methods))
    groups = pd.DataFrame({"calibration": column.fillna(NOT_RECORDED).to_numpy(),
                           "method": methods["method"].to_numpy()})
    parts = "; ".join(f"`{c}` ({', '.join(sorted(g['method'].unique()))})"
                      for c, g in groups.groupby("calibration", sort=True)) or "none"
    return ("**Calibration** (one post-hoc step for every method, fitted on the validation split only; "
            f"`evaluation.calibration`): {parts}.")


def row_calibration(section: Section, row: Row) -> str:
    """The calibration setting(s) the row's runs in this section recorded."""
    values = sorted({as_text(run.get("calibration")) or NOT_RECORDED
                     for (row_id, _, _), run in section.lookup.items() if row_id == row.id})
    return ", ".join(values) or NOT_RECORDED


def has_calibration_metrics(section: Section) -> bool:
    """True when any run of the section logged one of the calibration metrics (older stores did not)."""
    names = [f"metrics.{m}" for m, _ in CALIBRATION_COLUMNS]
    values = [run.get(n) for run in section.lookup.values() for n in names]
    return any(v is not None and np.isfinite(float(v)) for v in values)


def nonnegative(c: CellStat) -> CellStat:
    """The cell with its lower bound clipped at 0: ECE, Brier and log loss are never negative (as
    the AUC intervals are clipped to [0, 1])."""
    if not np.isfinite(c.summary.ci_low) or c.summary.ci_low >= 0.0:
        return c
    return replace(c, summary=replace(c.summary, ci_low=0.0))


def calibration_table(section: Section, csv_rows: list[dict[str, Any]]) -> Block:
    """Per row and rate: ECE, Brier and log loss on the configured test mask, mean ± std [95%
    interval over seeds] (n); the lowest method mean per rate and metric in bold.  Appends the same
    numbers to the CSV (table ``calibration``)."""
    if not has_calibration_metrics(section):
        return Paragraph("No run of this section logged calibration metrics (ECE, Brier, log loss); "
                         "runs recorded before they were added have none.")
    best: dict[tuple[float, str], float] = {}
    for rate in section.rates:
        for metric, _ in CALIBRATION_COLUMNS:
            means = [section.cell(r, rate, metric).summary.mean for r in section.method_rows()]
            finite = [m for m in means if np.isfinite(m)]
            best[(rate, metric)] = min(finite) if finite else np.nan
    rows = []
    for row in section.rows:
        setting = MISSING if row.is_reference else row_calibration(section, row)
        for rate in section.rates:
            out = row_cells(row) + [Cell(setting), Cell(rate_text(rate))]
            for metric, _ in CALIBRATION_COLUMNS:
                c = nonnegative(section.cell(row, rate, metric))
                cell = format_cell(c)
                if not row.is_reference and c.n and c.summary.mean == best[(rate, metric)]:
                    cell = Cell(cell.text, bold=True, kind=cell.kind)
                out.append(cell)
                s = c.summary
                csv_rows.append({"table": "calibration", "pattern": section.pattern, "protocol": section.protocol,
                                 "method": row.method, "display": row.label, "setting": row.setting,
                                 "config_hash": row.config_hash, "rate": rate_text(rate), "metric": metric,
                                 "n": c.n, "n_expected": c.n_expected, "n_failed": c.n_failed,
                                 "n_running": c.n_running, "n_no_value": c.n_no_value, "n_not_run": c.n_not_run,
                                 "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
                                 "interval": "seeds" if c.n else ""})
            rows.append(out)
    return TableView(
        "Calibration of the test-mask probabilities: ECE, Brier score and log loss (lower is better)",
        ["method", "training", "calibration", "trained at rate"] + [label for _, label in CALIBRATION_COLUMNS],
        rows, text_columns=4,
        note="On the configured test mask, after the shared post-hoc calibration named in the column (fitted on "
             "the validation split; the Bayes oracle is not calibrated). ECE: 15 equal-width bins of the top-class "
             "confidence; Brier: mean over samples of sum_k (p_k − y_k)², binary on both columns (range 0–2); "
             "log loss: natural log, probabilities clipped at 1e-15; multilabel: mean over labels. "
             "mean ± std over seeds [95% t interval over seeds only: no test-sample term; clipped at 0] (n = seeds). "
             "Lowest method mean per rate and metric in bold.")
