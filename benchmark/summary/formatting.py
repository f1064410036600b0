"""Number and cell formatting shared by every leaderboard table (pure string functions).

One place decides how a missing value, a p-value, a signed difference or a cell with missing
seeds reads, so the Markdown, the HTML page and the console never disagree.
"""
from __future__ import annotations

import numpy as np

from benchmark.summary.document import Cell
from benchmark.summary.model import CellStat, Row

MISSING = "—"


def fixed(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; MISSING for NaN / inf."""
    return f"{x:.{digits}f}" if np.isfinite(x) else MISSING


def signed(x: float, digits: int = 3) -> str:
    """``x`` with an explicit sign (a difference); MISSING for NaN / inf."""
    return f"{x:+.{digits}f}" if np.isfinite(x) else MISSING


def p_text(p: float) -> str:
    """"p=0.034" / "p<0.001" / "p n/a"."""
    if not np.isfinite(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def rate_text(r: float) -> str:
    """A missing rate as written in headers and the CSV: shortest form (0, 0.25, 0.5)."""
    return f"{r:g}"


def _count_text(c: CellStat) -> str:
    if c.n == c.n_expected and not c.reasons():
        return f"(n={c.n})"
    why = c.reasons()
    return f"(n={c.n} of {c.n_expected}" + (f"; {why})" if why else ")")


def format_cell(c: CellStat, with_ci: bool = True) -> Cell:
    """mean ± std [95% interval] (n), with the missing seeds and why; styled missing when any
    expected seed is absent, so an incomplete cell is never read as a complete one."""
    s = c.summary
    incomplete = c.n < c.n_expected
    if c.n == 0:
        return Cell(f"{MISSING} {_count_text(c)}", kind="missing")
    body = fixed(s.mean)
    if c.n >= 2:
        body += f" ± {fixed(s.std)}"
    if with_ci and np.isfinite(s.ci_low) and np.isfinite(s.ci_high):  # one seed: test-sample noise only
        body += f" [{fixed(s.ci_low)}, {fixed(s.ci_high)}]"
    if c.n_leak:  # the leak guard: never let a leaky number pass as a result
        return Cell(f"{body} {_count_text(c)} ⚠ {c.n_leak} seed(s) above Bayes + 3 SE: leak?", kind="missing")
    return Cell(f"{body} {_count_text(c)}", kind="missing" if incomplete else "")


def row_cells(row: Row) -> list[Cell]:
    """The two label cells of a table row: method label and training setting (none for the reference)."""
    return [Cell(row.label), Cell(MISSING if row.is_reference else row.setting)]
