"""The scenario suite's files, built from its MLflow store alone: one leaderboard per entry and
``summary.md|csv|html`` (scenarios spec, part C).

Layout under the suite's results folder (``results/scenarios``): ``<entry>/leaderboard.md|csv|html``
and its plots (the usual leaderboard of that entry's runs only, selected by the ``suite_entry``
tag), and the summary:

* **gap to Bayes**: method x entry, AUC(method) − AUC(Bayes oracle) on the same test samples under
  the entry's evaluation (``suite_evaluate``: the test mask, or e.g. image alone), per seed
  averaged over the entry's rates, with the leaderboards' 95% interval (seeds + test samples);
  plus the Bayes AUC itself and the **independent-evidence ceiling** row (ceiling − Bayes);
* **interaction**: each method against the ceiling (sig. above it = the method models the joint);
* **informative missingness**: each method's AUC under test ``mnar`` and test ``mcar`` and the drop;
* the **claims table** (``claims``).

Output depends only on the store (sorted rows, fixed formats), so a rebuild is byte-identical.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.summary.assemble import build_report
from benchmark.summary.build import write_report
from benchmark.summary.claims import claim_results, claims_table, diff_text
from benchmark.summary.contrast import (
    EVIDENCE_LABEL,
    EVIDENCE_METHOD,
    difference,
    level,
    noise_margin,
    verdict,
    within_noise,
)
from benchmark.summary.document import Bullets, Cell, Document, Heading, Paragraph, TableView
from benchmark.summary.formatting import MISSING, fixed, rate_text
from benchmark.summary.model import CellStat
from benchmark.summary.predictions import PredictionStore
from benchmark.summary.render import render_html, render_markdown
from benchmark.summary.suite_runs import Entry, load_entries, suite_runs
from methods import list_methods

SUMMARY_COLUMNS = ["table", "entry", "scenario", "evaluate", "method", "baseline", "rates", "claim", "n",
                   "n_expected", "mean", "std", "ci_low", "ci_high", "interval", "verdict"]
EVALUATION_TEXT = {"test": "test mask", "full": "full", "image_missing": "image missing",
                   "tabular_missing": "image alone"}


def level_text(c: CellStat | None) -> str:
    """AUC [95% interval] (n of m when seeds are missing)."""
    if c is None or c.n == 0:
        return MISSING
    s = c.summary
    text = fixed(s.mean) + (f" [{fixed(s.ci_low)}, {fixed(s.ci_high)}]" if c.n and s.ci_low == s.ci_low else "")
    return text + (f" (n={c.n} of {c.n_expected})" if c.n < c.n_expected else "")


def _csv(table: str, entry: Entry | None, method: str, c: CellStat | None, **extra: Any) -> dict[str, Any]:
    """One summary.csv row: the same numbers as the Markdown cell, unformatted."""
    s = c.summary if c is not None else None
    return {"table": table, "entry": entry.name if entry else "", "scenario": entry.scenario if entry else "",
            "evaluate": entry.evaluate if entry else "", "method": method,
            "rates": " ".join(rate_text(r) for r in entry.section.rates) if entry and entry.section else "",
            "n": c.n if c else 0, "n_expected": c.n_expected if c else 0, "mean": s.mean if s else None,
            "std": s.std if s else None, "ci_low": s.ci_low if s else None, "ci_high": s.ci_high if s else None,
            "interval": ("seeds+test" if c.with_test_noise else "seeds") if c and c.n else "", **extra}


def _kind(c: CellStat | None) -> str:
    """Cells lacking seeds are styled missing, so an incomplete number is never read as complete."""
    return "missing" if c is None or c.n < c.n_expected else ""


def entry_header(e: Entry) -> str:
    """A matrix column: the entry, what is read of it and its rates (the AVG is over those)."""
    rates = ", ".join(rate_text(r) for r in e.section.rates) if e.section else MISSING
    return f"{e.name} ({EVALUATION_TEXT.get(e.evaluate, e.evaluate)}; rates {rates})"


def gap_matrix(entries: list[Entry], csv_rows: list[dict[str, Any]]) -> TableView:
    """Method x entry: AVG gap to the Bayes oracle [95%], then the Bayes AUC and the ceiling rows."""
    methods = sorted({r.method for e in entries if e.section for r in e.section.method_rows()})
    gaps: dict[str, list[CellStat | None]] = {}
    for m in methods:
        gaps[m] = []
        for e in entries:
            a, b = e.side(e.method(m)), e.side(e.oracle())
            gaps[m].append(difference(a, b) if a is not None and b is not None else None)
            csv_rows.append(_csv("gap_to_bayes", e, m, gaps[m][-1], baseline="bayes_oracle"))

    def mean_gap(m: str) -> float:
        vals = [c.summary.mean for c in gaps[m] if c is not None and c.n]
        return sum(vals) / len(vals) if vals else float("-inf")

    rows = [[Cell(m)] + [Cell(diff_text(c), kind=_kind(c)) for c in gaps[m]]
            for m in sorted(methods, key=lambda m: (-mean_gap(m), m))]
    bayes, ceiling = [], []
    for e in entries:
        oracle = e.side(e.oracle())
        bayes.append(level(oracle) if oracle is not None else None)
        csv_rows.append(_csv("bayes_auc", e, "bayes_oracle", bayes[-1]))
        top = e.side(e.oracle(), ceiling=True)
        c = difference(top, oracle) if top is not None and oracle is not None else None
        ceiling.append(c if c is not None and c.n else None)
        csv_rows.append(_csv("gap_to_bayes", e, EVIDENCE_METHOD, ceiling[-1], baseline="bayes_oracle"))
    rows.append([Cell("Bayes oracle (AUC, not a gap)")] + [Cell(level_text(c), kind="ref") for c in bayes])
    rows.append([Cell(EVIDENCE_LABEL)] + [Cell(diff_text(c), kind="ref") for c in ceiling])
    return TableView(
        "Gap to Bayes: AUC(method) − AUC(Bayes oracle), AVG over the entry's rates",
        ["method"] + [entry_header(e) for e in entries], rows, text_columns=1,
        note="Per seed: the mean over the entry's rates of AUC(method) − AUC(Bayes oracle) on the same test samples and "
             "masks, under the entry's evaluation (test mask; image alone = every tabular record removed at test); "
             "then over seeds. [95% interval: seeds and test samples, paired by sample id.] Rows ordered by the "
             f"mean gap. {EVIDENCE_LABEL}: the AUC of the sum of each modality's marginal LLR (the best a perfectly "
             "calibrated late fusion can do) minus Bayes; below 0 where the modalities interact. "
             f"{MISSING}: not run (or no oracle).")


def ceiling_verdict(d: CellStat | None, margin: float | None) -> str:
    """Above the ceiling (sig.), within its noise (the Δ interval inside +/- ``margin``; said with
    "sig. below" when the interval also excludes 0), below it (sig.), or n.s."""
    if d is None:
        return MISSING
    v, mean = verdict(d), d.summary.mean
    if v == "sig." and mean > 0:
        return "above the ceiling (sig.)"
    if within_noise(d, margin):
        return (f"within noise of the ceiling (±{fixed(margin)})"
                + (", sig. below" if v == "sig." else ""))
    return "below the ceiling (sig.)" if v == "sig." else v


def interaction_tables(entries: list[Entry], csv_rows: list[dict[str, Any]]) -> list[TableView]:
    """Per interaction entry: each method's AUC, its difference to the ceiling and the verdict."""
    tables = []
    for e in entries:
        if e.scenario != "interaction" or e.section is None:
            continue
        top = e.side(e.oracle(), ceiling=True)
        ceiling = level(top) if top is not None else None
        margin = noise_margin(ceiling) if ceiling is not None else None
        rows = []
        for row in e.section.method_rows():
            side = e.side(row)
            auc = level(side) if side is not None else None
            d = difference(side, top) if side is not None and top is not None else None
            d = d if d is not None and d.n else None
            text = ceiling_verdict(d, margin)
            strong = text.endswith("ceiling (sig.)")  # above / below, not merely within noise
            rows.append((-(auc.summary.mean if auc and auc.n else -1.0), row.method,
                         [Cell(row.method), Cell(level_text(auc), kind=_kind(auc)), Cell(diff_text(d), kind=_kind(d)),
                          Cell(text, bold=strong, kind="sig" if strong else "ns")]))
            csv_rows.append(_csv("vs_ceiling", e, row.method, d, baseline=EVIDENCE_METHOD, verdict=text))
        oracle = e.side(e.oracle())
        body = [r for *_, r in sorted(rows, key=lambda t: (t[0], t[1]))]
        body.append([Cell(EVIDENCE_LABEL), Cell(level_text(ceiling), kind="ref"), Cell("0.000", kind="ref"),
                     Cell("reference", kind="ref")])
        body.append([Cell("Bayes oracle"), Cell(level_text(level(oracle) if oracle else None), kind="ref"),
                     Cell(MISSING, kind="ref"), Cell("reference", kind="ref")])
        tables.append(TableView(
            f"`{e.name}`: does a method beat the independent-evidence ceiling?",
            ["method", "AUC [95%]", "Δ vs ceiling [95%]", "verdict"], body, text_columns=1,
            note="The ceiling is what any late fusion of calibrated unimodal scores can reach at best; a method "
                 "significantly above it models the cross-modal interaction. Δ paired by seed and test sample; "
                 "sig. = the 95% interval (seeds and test samples) excludes 0. Within noise: the whole Δ interval "
                 "lies inside ± the half-width of the ceiling AUC's own 95% interval"
                 + (f" (±{fixed(margin)})" if margin is not None else "")
                 + ", i.e. the two differ by less than this test set can resolve of one AUC; a learnt model can be "
                   "sig. below a population optimum and still within its noise."))
    return tables


def informative_table(entries: list[Entry], csv_rows: list[dict[str, Any]]) -> list[TableView]:
    """Each method's AUC under test mnar and test mcar (same training), and the drop mnar − mcar."""
    pool = [e for e in entries if e.scenario == "informative_missing" and e.section is not None]
    mnar = next((e for e in pool if e.test_mechanism == "mnar"), None)
    mcar = next((e for e in pool if e.test_mechanism == "mcar"), None)
    if not pool:
        return []
    if mnar is None or mcar is None:
        return [TableView("Informative missingness", ["note"], [[Cell(
            "needs two entries of scenario informative_missing, one with test mnar and one with test mcar; found: "
            + ", ".join(f"{e.name} (test {e.test_mechanism})" for e in pool), kind="missing")]], text_columns=1)]
    assert mnar.section is not None and mcar.section is not None
    names = sorted({r.method for r in mnar.section.rows} | {r.method for r in mcar.section.rows})
    rows = []
    for m in names:
        ra = mnar.oracle() if m == "bayes_oracle" else mnar.method(m)
        rb = mcar.oracle() if m == "bayes_oracle" else mcar.method(m)
        a, b = mnar.side(ra), mcar.side(rb)
        la, lb = (level(a) if a else None), (level(b) if b else None)
        d = difference(a, b) if a is not None and b is not None else None
        d = d if d is not None and d.n else None
        v = verdict(d) if d is not None else MISSING
        ref = m == "bayes_oracle"
        rows.append((ref, m, [Cell("Bayes oracle" if ref else m), Cell(level_text(la), kind=_kind(la)),
                              Cell(level_text(lb), kind=_kind(lb)), Cell(diff_text(d), kind=_kind(d)),
                              Cell(v, bold=v == "sig.", kind="sig" if v == "sig." else "ns")]))
        csv_rows.append(_csv("mnar_minus_mcar", mnar, m, d, baseline=f"{mcar.name}", verdict=v))
    return [TableView(
        f"Informative missingness: AUC under test mnar (`{mnar.name}`) and test mcar (`{mcar.name}`)",
        ["method", "AUC test mnar [95%]", "AUC test mcar [95%]", "drop: mnar − mcar [95%]", "verdict"],
        [r for *_, r in sorted(rows, key=lambda t: (t[0], t[1]))], text_columns=1,
        note="Both entries train under mnar (missingness informative of the label); only the test masks' mechanism "
             "differs. A positive drop = the method's AUC relied on the missingness pattern, which a change of policy "
             "(test mcar) takes away. Paired by seed and test sample; sig. = the 95% interval excludes 0.")]


def provenance_lines(suite: str, runs: pd.DataFrame, entries: list[Entry]) -> list[str]:
    """What the summary was built from: runs per entry, what each entry reads, superseded runs."""
    ends = pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.Series(dtype="datetime64[ns, UTC]")
    last = ends.max() if len(ends) else None
    lines = [f"Suite **{suite}**: {len(runs)} run attempt(s) in {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}; "
             f"latest run end: {last.strftime('%Y-%m-%d %H:%M UTC') if last is not None and last == last else MISSING}."]
    for e in entries:
        finished = int(e.runs["finished"].sum()) if not e.runs.empty else 0
        extra = f"; {e.superseded} run(s) of an older configuration not shown" if e.superseded else ""
        if e.extra_sections:
            extra += f"; {e.extra_sections} more (pattern, protocol) section(s) ignored"
        lines.append(f"[`{e.name}`]({e.name}/leaderboard.md): scenario `{e.scenario}`, evaluated on "
                     f"{EVALUATION_TEXT.get(e.evaluate, e.evaluate)}, test mechanism `{e.test_mechanism}`; "
                     f"{finished} finished run(s){extra}.")
    return lines


def suite_document(tracking_uri: str, suite: str, runs: pd.DataFrame | None = None,
                   registered: list[str] | None = None) -> tuple[Document, list[dict[str, Any]], list[Entry]]:
    """The summary document, its CSV rows and the entries (for the per-entry leaderboards)."""
    runs = suite_runs(tracking_uri, suite) if runs is None else runs
    predictions = PredictionStore()
    try:
        entries = load_entries(tracking_uri, suite, predictions, runs)
        doc = Document(f"Scenario suite: {suite}")
        csv_rows: list[dict[str, Any]] = []
        doc.blocks.append(Bullets(provenance_lines(suite, runs, entries)))
        doc.blocks.append(Paragraph(
            "Built from the MLflow store alone (runs tagged `suite_entry`). Every number is a paired difference or "
            "an AUC of logged test predictions; 95% intervals include seed-to-seed spread and test-sample noise. "
            "Each entry's full leaderboard is linked above."))
        if entries:
            doc.blocks.append(Heading("Gap to Bayes", 2))
            doc.blocks.append(gap_matrix(entries, csv_rows))
            inter = interaction_tables(entries, csv_rows)
            if inter:
                doc.blocks.append(Heading("Cross-modal interaction: beyond the independent-evidence ceiling?", 2))
                doc.blocks += inter
            info = informative_table(entries, csv_rows)
            if info:
                doc.blocks.append(Heading("Informative missingness and a change of missingness policy", 2))
                doc.blocks += info
            doc.blocks.append(Heading("Claims", 2))
            doc.blocks.append(claims_table(claim_results(entries, registered or list(list_methods())), csv_rows))
            doc.blocks.append(Paragraph(
                "Synthesis of a missing modality can never beat the Bayes AUC of the modalities that are "
                "available: in `redundant_hard` (image alone) the gap to Bayes is bounded by 0 for every method, and "
                "a method can only close the gap of `image_only`'s encoder, not exceed the image's Bayes AUC."))
        else:
            doc.blocks.append(Paragraph(f"No runs tagged `suite={suite}` in the store."))
    finally:
        predictions.close()
    return doc, csv_rows, entries


def build_suite(tracking_uri: str, out_dir: Path, suite: str, mlflow_ui: str | None = None) -> list[Path]:
    """Write every entry's leaderboard and ``summary.md|csv|html`` into ``out_dir``; returns the paths
    (nothing when the store has no run of the suite)."""
    out_dir = Path(out_dir)
    runs = suite_runs(tracking_uri, suite)
    if runs.empty:
        return []
    doc, csv_rows, entries = suite_document(tracking_uri, suite, runs)
    written: list[Path] = []
    for e in entries:
        report = build_report(tracking_uri, f"{e.dataset} / {suite} / {e.name}", runs=e.runs)
        if report is not None:
            written += write_report(report, out_dir / e.name, mlflow_ui)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv, page = out_dir / "summary.md", out_dir / "summary.csv", out_dir / "summary.html"
    md.write_text(render_markdown(doc))
    pd.DataFrame(csv_rows, columns=SUMMARY_COLUMNS).to_csv(csv, index=False, float_format="%.6g", lineterminator="\n")
    page.write_text(render_html(doc))
    return written + [md, csv, page]
