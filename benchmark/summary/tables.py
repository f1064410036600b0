"""The leaderboard tables of one (pattern, protocol) section, and their CSV rows (computation only).

Each function returns document blocks of formatted cells and appends the same numbers, unformatted,
to the CSV rows (``CSV_COLUMNS``), so the files and the console show exactly what the CSV holds.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from benchmark.summary.compare import Comparison, compare
from benchmark.summary.contrast import EVIDENCE_LABEL, EVIDENCE_METHOD, ceiling_average, ceiling_cells
from benchmark.summary.document import Block, Cell, Curve, FigureRef, Paragraph, RatePlot, TableView
from benchmark.summary.formatting import MISSING, format_cell, p_text, rate_text, row_cells, signed
from benchmark.summary.model import CellStat, Row, Section
from benchmark.summary.predictions import PredictionStore
from benchmark.summary.stats import ALPHA, mean_over_rates, normalised_area, relative_drop

BASELINE = "late_fusion"  # the method every other one is also compared with
SHOWN_METRICS = (("test_auc", "AUC"), ("test_acc", "ACC"))
CSV_METRICS = ("test_auc", "test_acc", "test_balanced_acc", "test_f1_macro")
# (metric prefix, column label) of each evaluation scenario, in the order the cell runner logs them.
SCENARIOS = tuple((metric_prefix(s), "test mask" if s == "mask" else s.replace("_", " ")) for s in EVAL_SCENARIOS)
CSV_COLUMNS = ["table", "pattern", "protocol", "method", "display", "setting", "config_hash", "reference",
               "rate", "metric", "n", "n_expected", "n_failed", "n_running", "n_no_value", "n_not_run",
               "n_incomplete", "mean", "std", "ci_low", "ci_high", "interval", "value", "p_paired_t", "p_wilcoxon", "delong_n",
               "delong_auc", "delong_auc_reference", "delong_diff", "delong_se", "p_delong", "verdict"]


def _csv_base(table: str, section: Section, row: Row) -> dict[str, Any]:
    return {"table": table, "pattern": section.pattern, "protocol": section.protocol, "method": row.method,
            "display": row.label, "setting": row.setting, "config_hash": row.config_hash}


def _csv_stat(c: CellStat) -> dict[str, Any]:
    s = c.summary
    return {"n": c.n, "n_expected": c.n_expected, "n_failed": c.n_failed, "n_running": c.n_running,
            "n_no_value": c.n_no_value, "n_not_run": c.n_not_run, "n_incomplete": c.n_incomplete,
            "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "interval": ("seeds+test" if c.with_test_noise else "seeds") if c.n else ""}


def summary_tables(section: Section, csv_rows: list[dict[str, Any]]) -> list[TableView]:
    """Per metric: rows x (rates + AVG), mean ± std [95% interval] (n); best method bolded."""
    tables = []
    for metric in CSV_METRICS:
        shown = dict(SHOWN_METRICS).get(metric)
        cells: dict[str, list[CellStat]] = {}
        for row in section.rows:
            per_rate = [section.cell(row, rate, metric) for rate in section.rates]
            avg = section.per_seed_aggregate(row, metric, mean_over_rates)
            cells[row.id] = per_rate + [avg]
            for rate, c in zip([rate_text(r) for r in section.rates] + ["AVG"], per_rate + [avg]):
                csv_rows.append({**_csv_base("summary", section, row), "rate": rate, "metric": metric, **_csv_stat(c)})
        if shown is None:
            continue
        best = []
        for j in range(len(section.rates) + 1):
            means = [cells[r.id][j].summary.mean for r in section.method_rows()]
            finite = [m for m in means if np.isfinite(m)]
            best.append(max(finite) if finite else math.nan)
        rows = []
        for row in section.rows:
            out = row_cells(row)
            for j, c in enumerate(cells[row.id]):
                cell = format_cell(c)
                if not row.is_reference and np.isfinite(best[j]) and c.summary.mean == best[j]:
                    cell = Cell(cell.text, bold=True, kind=cell.kind)
                out.append(cell)
            rows.append(out)
        ceiling = evidence_row(section, csv_rows) if metric == "test_auc" else None
        if ceiling is not None:
            rows.append(ceiling)
        tables.append(TableView(
            f"Test {shown} by missing rate (pattern `{section.pattern}`, protocol `{section.protocol}`)",
            ["method", "training"] + [f"rate {rate_text(r)}" for r in section.rates] + ["AVG"], rows,
            note=f"mean ± std over seeds [95% interval: seeds and test samples] (n = seeds). AVG = each seed's mean over "
                 f"the {len(section.rates)} rates, then summarised over seeds (only seeds with every rate). "
                 f"Best method per column in bold. {MISSING} / 'n=k of m' = missing runs, with the reason."))
    return tables


def evidence_row(section: Section, csv_rows: list[dict[str, Any]]) -> list[Cell] | None:
    """The independent-evidence ceiling's reference row of the test-AUC table (and its CSV rows):
    the AUC of the sum of the marginal LLRs, logged by the oracle; None when the oracle logged none."""
    per_rate = ceiling_cells(section)
    avg = ceiling_average(section)
    if per_rate is None or avg is None:
        return None
    oracle = section.reference_rows()[0]
    base = {"table": "summary", "pattern": section.pattern, "protocol": section.protocol, "method": EVIDENCE_METHOD,
            "display": EVIDENCE_LABEL, "setting": "", "config_hash": oracle.config_hash, "reference": oracle.method}
    for rate, c in zip([rate_text(r) for r in section.rates] + ["AVG"], per_rate + [avg]):
        csv_rows.append({**base, "rate": rate, "metric": "ceiling_test_auc", **_csv_stat(c)})
    return [Cell(EVIDENCE_LABEL), Cell(MISSING)] + [format_cell(c) for c in per_rate + [avg]]


def robustness(section: Section, csv_rows: list[dict[str, Any]], figures: list[RatePlot],
               dataset: str) -> list[Block]:
    """Normalised area under the AUC-vs-rate curve per seed, relative drop from rate 0, and the
    plot's description (appended to ``figures``; drawn by ``plots``)."""
    blocks: list[Block] = []
    curves = []
    has_zero = 0.0 in section.rates
    span = f"{rate_text(section.rates[0])}–{rate_text(section.rates[-1])}"
    rows = []
    for row in section.rows:
        cells = [section.cell(row, rate, "test_auc") for rate in section.rates]
        curves.append(Curve(row.label if row.setting == "default" else f"{row.label} ({row.setting})",
                            section.rates, [c.summary.mean for c in cells],
                            [c.summary.ci_low for c in cells], [c.summary.ci_high for c in cells],
                            reference=row.is_reference))
        area = section.per_seed_aggregate(row, "test_auc", normalised_area)
        csv_rows.append({**_csv_base("robustness", section, row), "rate": f"{span}", "metric": "test_auc_area",
                         **_csv_stat(area)})
        out = row_cells(row) + [format_cell(area, with_ci=True) if len(section.rates) > 1
                                 else Cell(f"{MISSING} (one rate)", kind="missing")]
        if has_zero:
            zero = cells[section.rates.index(0.0)]
            for rate, c in zip(section.rates, cells):
                if rate == 0.0:
                    continue
                # Same seeds on both sides, so a failed seed cannot masquerade as robustness.
                common = sorted(set(zero.values) & set(c.values))
                drop = relative_drop(float(np.mean([zero.values[s] for s in common])),
                                           float(np.mean([c.values[s] for s in common]))) if common else math.nan
                csv_rows.append({**_csv_base("robustness", section, row), "rate": rate_text(rate),
                                 "metric": "test_auc_relative_drop", "n": len(common),
                                 "n_expected": len(section.seeds), "value": drop})
                partial = len(common) < len(section.seeds)
                text = f"{drop * 100:+.1f}%" if np.isfinite(drop) else MISSING
                if partial:
                    text += f" (n={len(common)} of {len(section.seeds)})"
                out.append(Cell(text, kind="missing" if partial else ""))
        rows.append(out)
    evidence = ceiling_cells(section)
    if evidence is not None:  # the second reference line: what calibrated late fusion can reach at best
        curves.append(Curve(EVIDENCE_LABEL, section.rates, [c.summary.mean for c in evidence],
                            [c.summary.ci_low for c in evidence], [c.summary.ci_high for c in evidence],
                            reference=True, style="evidence"))
    columns = ["method", "training", f"AUC area (rates {span}, normalised)"]
    if has_zero:
        columns += [f"drop at {rate_text(r)}" for r in section.rates if r != 0.0]
    blocks.append(TableView(
        "Robustness: area under the AUC-vs-rate curve and relative AUC drop from rate 0", columns, rows,
        note="Area: trapezoid over the rates divided by the rate span (an average AUC over the curve), per seed, "
             "then mean ± std [95% interval: seeds and test samples] over seeds with every rate. Drop: (AUC(0) − AUC(r)) / AUC(0) of "
             "the means over the seeds that have both rates; positive = worse than complete data." +
             ("" if has_zero else " No rate-0 runs: drops are not defined.")))
    plot = RatePlot(f"auc_vs_rate_{section.slug}", curves,
                    f"{dataset}: test AUC vs missing rate ({section.pattern}, {section.protocol})",
                    f"missing rate (pattern {section.pattern}, protocol {section.protocol})",
                    "test AUC (mean over seeds, 95% interval)")
    figures.append(plot)
    # The SVG is filled in when the plot is drawn (document.with_svgs).
    blocks.append(FigureRef(plot.stem, f"{plot.title}. Solid: methods (error bars: 95% interval, seeds and test samples); "
                                       f"dashed black: Bayes oracle, shaded: its 95% interval" +
                                       ("; dotted grey: independent-evidence ceiling (sum of the marginal LLRs)."
                                        if evidence is not None else "."), svg=""))
    return blocks


def comparison_tables(section: Section, csv_rows: list[dict[str, Any]],
                      predictions: PredictionStore | None) -> list[Block]:
    """Each method vs the best method at each rate and vs late fusion."""
    methods = section.method_rows()
    blocks: list[Block] = []
    if len(methods) < 2:
        return [Paragraph("Paired comparisons need two methods; this section has "
                          f"{len(methods)}.")]
    best_per_rate: dict[float, Row | None] = {}
    for rate in section.rates:
        scored = [(section.cell(r, rate, "test_auc").summary.mean, r) for r in methods]
        scored = [(m, r) for m, r in scored if np.isfinite(m)]
        best_per_rate[rate] = max(scored, key=lambda t: t[0])[1] if scored else None
    baselines = [r for r in methods if r.method == BASELINE and r.setting == "default"] or \
                [r for r in methods if r.method == BASELINE]
    # A tuned row is compared with the tuned late fusion (same setting), a default row with the
    # default one: tuning effort is never counted as a method's advantage.
    by_setting = {r.setting: r for r in methods if r.method == BASELINE}
    targets: list[tuple[str, Callable[[float, Row], Row | None]]] = [
        ("best", lambda rate, row: best_per_rate[rate])]
    if baselines:
        targets.append((BASELINE, lambda rate, row, b=baselines[0]: by_setting.get(row.setting, b)))
    for name, ref_for in targets:
        rows = []
        for row in methods:
            out = row_cells(row)
            for rate in section.rates:
                ref = ref_for(rate, row)
                if ref is None:
                    out.append(Cell(f"{MISSING} (no reference)", kind="missing"))
                    continue
                if ref.id == row.id:
                    out.append(Cell("reference", kind="ref"))
                    continue
                comp = compare(section, row, ref, rate, predictions)
                out.append(_comparison_cell(comp))
                csv_rows.append(_comparison_csv(section, comp, name))
            rows.append(out)
        if name == "best":
            refs = "; ".join(f"{rate_text(r)}: {best_per_rate[r].label if best_per_rate[r] else MISSING}"
                             for r in section.rates)
            title = "Paired comparison of test AUC vs the best method at each rate"
            ref_note = f"Reference (highest mean AUC) per rate: {refs}. "
        else:
            title = f"Paired comparison of test AUC vs {baselines[0].label}"
            ref_note = (f"Reference: {baselines[0].label} of the row's own setting (tuned rows vs the tuned "
                        f"{baselines[0].label}, default rows vs the default one). " if len(by_setting) > 1 else "")
        blocks.append(TableView(
            title, ["method", "training"] + [f"rate {rate_text(r)}" for r in section.rates], rows,
            note=ref_note + "Δ = method − reference, mean over seeds with identical masks [95% t interval]. "
                 f"t: paired t-test over seeds; DeLong: on the test predictions of those seeds, paired by "
                 f"(seed, sample id), seeds as strata, a sample shared by several seeds counted once (clustered). "
                 f"**sig.** only when both p < {ALPHA:g}; otherwise **n.s.** — "
                 "a difference marked n.s. is not evidence that either method is better. No multiple-comparison "
                 "correction."))
    if not baselines:
        blocks.append(Paragraph(f"No `{BASELINE}` runs in this section: the comparison vs late fusion is skipped."))
    return blocks


def _comparison_cell(comp: Comparison) -> Cell:
    if comp.paired is None or comp.paired.n == 0:
        extra = f"; {comp.n_mask_mismatch} seed(s) with different masks" if comp.n_mask_mismatch else ""
        return Cell(f"{MISSING} (no paired seeds{extra})", kind="missing")
    d = comp.paired.diff
    ci = f" [{signed(d.ci_low)}, {signed(d.ci_high)}]" if comp.paired.n >= 2 else ""
    dl = f"DeLong {p_text(comp.delong.p)}" if comp.delong is not None else (comp.delong_note or "DeLong n/a")
    verdict = "sig." if comp.significant else "n.s."
    extra = []
    if comp.n_mask_mismatch:
        extra.append(f"{comp.n_mask_mismatch} seed(s) excluded: masks differ")
    if comp.n_no_predictions:
        extra.append(f"{comp.n_no_predictions} seed(s) without predictions")
    tail = ("; " + "; ".join(extra)) if extra else ""
    return Cell(f"{signed(d.mean)}{ci} {verdict} (t {p_text(comp.paired.p_ttest)}; {dl}; n={comp.paired.n}{tail})",
                bold=comp.significant, kind="sig" if comp.significant else "ns")


def _comparison_csv(section: Section, comp: Comparison, name: str) -> dict[str, Any]:
    out = {**_csv_base(f"paired_vs_{name}", section, comp.row), "reference": comp.reference.method,
           "rate": rate_text(comp.rate), "metric": "test_auc", "verdict": "sig" if comp.significant else "ns"}
    if comp.paired is not None:
        d = comp.paired.diff
        out.update({"n": comp.paired.n, "n_expected": len(section.seeds), "mean": d.mean, "std": d.std,
                    "ci_low": d.ci_low, "ci_high": d.ci_high, "p_paired_t": comp.paired.p_ttest,
                    "p_wilcoxon": comp.paired.p_wilcoxon})
    if comp.delong is not None:
        dl = comp.delong
        out.update({"delong_n": dl.n, "delong_auc": dl.auc_a, "delong_auc_reference": dl.auc_b,
                    "delong_diff": dl.diff, "delong_se": dl.se, "p_delong": dl.p})
    return out


def scenario_table(section: Section, csv_rows: list[dict[str, Any]]) -> TableView:
    """Each model (trained at a rate) tested with the configured mask, with everything available,
    with every image removed and with every tabular record removed."""
    rows = []
    for row in section.rows:
        for rate in section.rates:
            out = row_cells(row) + [Cell(rate_text(rate))]
            for prefix, _ in SCENARIOS:
                c = section.cell(row, rate, f"{prefix}_auc")
                out.append(format_cell(c, with_ci=False))
                if prefix != "test":
                    csv_rows.append({**_csv_base("scenario", section, row), "rate": rate_text(rate),
                                     "metric": f"{prefix}_auc", **_csv_stat(c)})
            rows.append(out)
    return TableView(
        "Single-modality scenarios: test AUC of the models trained at each rate",
        ["method", "training", "trained at rate"] + [label for _, label in SCENARIOS], rows,
        note="test mask = the configured test mask (as in the tables above); full = every available modality "
             "given; image missing / tabular missing = that modality removed for every test sample. "
             "mean ± std over seeds (n); 95% intervals are in the CSV.", text_columns=3)
