"""The convergence table: when each method's runs peaked and stopped under the shared budget.

Why: with ``max_epochs`` + early stopping (``training.patience``) the same for every method, a
reader must be able to check that no method was cut off while still improving (best epoch at the
cap) and that no method is selected before it learnt anything (best epoch always the first).  The
table shows, per row over every run of the section: the median best epoch (1-based) with its
range, the median number of epochs trained, the share of runs that stopped early and how many hit
the cap with their best epoch on the last one.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.summary.document import Block, Cell, Paragraph, TableView
from benchmark.summary.formatting import row_cells
from benchmark.summary.model import Row, Section


def run_values(section: Section, row: Row, metric: str) -> np.ndarray:
    """The metric of every run of the row in the section (NaN-free)."""
    values = [run.get(f"metrics.{metric}") for (row_id, _, _), run in section.lookup.items() if row_id == row.id]
    out = np.asarray([float(v) for v in values if v is not None], dtype=np.float64)
    return out[np.isfinite(out)]


def cap_of(section: Section, row: Row) -> float:
    values = [run.get("params.max_epochs") for (row_id, _, _), run in section.lookup.items() if row_id == row.id]
    caps = [float(v) for v in values if v not in (None, "") and str(v) not in ("nan", "None")]
    return max(caps) if caps else float("nan")


def convergence_table(section: Section, csv_rows: list[dict[str, Any]]) -> Block:
    """Best and stopping epochs per method row (all rates and seeds of the section)."""
    rows, any_value = [], False
    for row in section.method_rows():
        best = run_values(section, row, "best_epoch") + 1  # 1-based for readers
        trained = run_values(section, row, "epochs_trained")
        stopped = run_values(section, row, "stopped_early")
        if not len(best):
            continue
        any_value = True
        cap = cap_of(section, row)
        at_cap = int(np.sum(best >= cap)) if np.isfinite(cap) else 0
        first = float(np.mean(best == 1))
        cells = [Cell(f"{np.median(best):g} [{best.min():g}–{best.max():g}]"),
                 Cell(f"{first:.0%}"),
                 Cell(f"{np.median(trained):g}" if len(trained) else "—"),
                 Cell(f"{np.mean(stopped):.0%}" if len(stopped) else "—"),
                 Cell(f"{at_cap}" if np.isfinite(cap) else "—"),
                 Cell(f"{cap:g}" if np.isfinite(cap) else "—"),
                 Cell(str(len(best)))]
        rows.append(row_cells(row) + cells)
        values = {"best_epoch_median": float(np.median(best)), "best_epoch_min": float(best.min()),
                  "best_epoch_max": float(best.max()), "share_best_first_epoch": first,
                  "epochs_trained_median": float(np.median(trained)) if len(trained) else np.nan,
                  "share_stopped_early": float(np.mean(stopped)) if len(stopped) else np.nan,
                  "runs_best_at_cap": float(at_cap), "max_epochs": cap}
        for metric, value in values.items():  # one CSV row per figure of the table, in ``value``
            csv_rows.append({"table": "convergence", "pattern": section.pattern, "protocol": section.protocol,
                             "method": row.method, "display": row.label, "setting": row.setting,
                             "config_hash": row.config_hash, "metric": metric, "n": len(best), "value": value})
    if not any_value:
        return Paragraph("No run of this section logged its best epoch.")
    return TableView(
        "Convergence under the shared budget: best validation epoch and epochs trained",
        ["method", "training", "best epoch: median [range]", "best = epoch 1", "epochs trained (median)",
         "stopped early", "best at the cap", "max_epochs", "runs"],
        rows, text_columns=2,
        note="Over every run of the section (all rates and seeds). Epochs are 1-based; a method with a "
             "contrastive pre-training stage counts those epochs too (model selection starts after it). "
             "'best at the cap': runs whose best validation epoch was the last allowed one, i.e. possibly "
             "still improving when the budget ended.")
