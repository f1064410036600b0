"""Writing the leaderboards: per dataset ``leaderboard.md/.csv/.html`` and its plots, and the index.

Per dataset it writes ``results/<dataset>/leaderboard.md``, ``.csv``, ``.html`` (the interactive,
self-contained page of ``benchmark.summary.page``, the full report collapsed at its bottom),
``heatmap_<pattern>_<protocol>.png/.svg`` and ``auc_vs_rate_<pattern>_<protocol>.png/.svg``;
``results/README.md`` indexes every dataset of the store and, with two or more datasets, ranks the
methods across them (average ranks, Friedman, Nemenyi); ``results/index.html`` is the page of the
whole store.  Output depends only on the store: rows are sorted, floats
formatted, the date is the latest run end time in the store, plots are written with fixed
metadata.  Rebuilding is byte-identical.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from rich.console import Console

from benchmark.summary.assemble import DatasetReport, build_report
from benchmark.summary.document import with_svgs
from benchmark.summary.heatmap import draw_heatmap
from benchmark.summary.index import dataset_row, index_document
from benchmark.summary.load import datasets_in_store, load_all_runs, select_fingerprints
from benchmark.summary.model import Section, build_sections
from benchmark.summary.page import render_page
from benchmark.summary.plots import draw_rank_plot, draw_rate_plot, figure_files
from benchmark.summary.provenance import provenance
from benchmark.summary.render import html_body, render_markdown, rich_headline, rich_tables
from benchmark.summary.tables import CSV_COLUMNS


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The CSV with a fixed column set and float format, so its bytes depend on the values only."""
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    df.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")


def write_report(report: DatasetReport, out_dir: Path, mlflow_ui: str | None = None) -> list[Path]:
    """Draw the dataset's figures, then write ``leaderboard.md/.csv/.html`` into ``out_dir``; the
    HTML is the interactive page (``page``) with the full report collapsed at its bottom."""
    out_dir.mkdir(parents=True, exist_ok=True)
    svgs = {}
    written = []
    for heat in report.heatmaps:
        svgs[heat.stem] = draw_heatmap(heat, out_dir)
        written += figure_files(out_dir / heat.stem)
    for plot in report.figures:
        svgs[plot.stem] = draw_rate_plot(plot, out_dir)
        written += figure_files(out_dir / plot.stem)
    report.document.blocks = with_svgs(report.document.blocks, svgs)
    md = out_dir / "leaderboard.md"
    md.write_text(render_markdown(report.document))
    csv = out_dir / "leaderboard.csv"
    write_csv(report.csv_rows, csv)
    page = out_dir / "leaderboard.html"
    page.write_text(render_page(report.document.title, [report.page], html_body(report.document),
                                mlflow_ui=mlflow_ui))
    return [md, csv, page] + written


def write_index(tracking_uri: str, results_dir: Path, cache: dict[str, DatasetReport] | None = None,
                all_fingerprints: bool = False, mlflow_ui: str | None = None) -> list[Path]:
    """results/README.md: one line per dataset of the store, then the cross-dataset ranking; and
    results/index.html, the interactive page of the whole store (the datasets built in this call,
    switchable, with links to every dataset's page).  Datasets built in this call come from
    ``cache``; the others are read from the store."""
    cache = cache or {}
    rows = []
    dataset_sections: dict[str, list[Section]] = {}
    all_runs = []
    for dataset in datasets_in_store(tracking_uri):
        runs = (cache[dataset].runs if dataset in cache else
                select_fingerprints(load_all_runs(tracking_uri, dataset), all_fingerprints)[0])
        if runs.empty:
            continue
        all_runs.append(runs)
        sections = cache[dataset].sections if dataset in cache else build_sections(runs)
        dataset_sections[dataset] = sections
        built = (results_dir / dataset / "leaderboard.md").exists()
        rows.append(dataset_row(dataset, runs, sections, built))
    if not rows:
        return []
    doc, plot = index_document(rows, pd.concat(all_runs, ignore_index=True), dataset_sections)
    written = []
    if plot is not None:
        doc.blocks = with_svgs(doc.blocks, {plot.stem: draw_rank_plot(plot, results_dir)})
        written = figure_files(results_dir / plot.stem)
    path = results_dir / "README.md"
    path.write_text(render_markdown(doc))
    store_page = results_dir / "index.html"
    links = "".join(f'<li><a href="{name}/leaderboard.html">{name}</a></li>' for name in sorted(dataset_sections)
                    if (results_dir / name / "leaderboard.md").exists())
    store_page.write_text(render_page(doc.title, [cache[d].page for d in sorted(cache)],
                                      f"<ul>{links}</ul>" + html_body(doc), mlflow_ui=mlflow_ui))
    return [path, store_page] + written


def build_leaderboards(tracking_uri: str, results_dir: Path, datasets: Sequence[str],
                       all_fingerprints: bool = False, mlflow_ui: str | None = None) -> list[Path]:
    """Write every file for ``datasets`` and refresh ``results_dir/README.md`` and ``index.html``;
    returns what was written.  ``all_fingerprints``: runs of older code or data become rows of their
    own instead of being left out.  ``mlflow_ui``: the served MLflow UI's URL, linked from run ids."""
    results_dir = Path(results_dir)
    written: list[Path] = []
    built: dict[str, DatasetReport] = {}
    for dataset in datasets:
        report = build_report(tracking_uri, dataset, all_fingerprints=all_fingerprints)
        if report is None:
            continue
        built[dataset] = report
        written += write_report(report, results_dir / dataset, mlflow_ui)
    if built:
        written += write_index(tracking_uri, results_dir, built, all_fingerprints, mlflow_ui)
    return written


def render_console(tracking_uri: str, dataset: str, console: Console) -> None:
    """The same tables as the files, printed with rich (end of a benchmark run)."""
    report = build_report(tracking_uri, dataset)
    if report is None:
        console.print(f"{dataset}: no runs in the store")
        return
    console.rule(f"[bold]{dataset}[/]")
    for line in provenance(report.runs):
        console.print(line.replace("**", ""), markup=False)
    rich_tables(report.document, console)


def render_summary(tracking_uri: str, dataset: str, console: Console, width: int = 100) -> None:
    """The terminal summary at the end of a grid: the headline of each section, within ``width``
    columns (the full tables are in the files)."""
    report = build_report(tracking_uri, dataset)
    if report is None:
        console.print(f"{dataset}: no runs in the store")
        return
    rich_headline(dataset, report.headlines, console, width)
