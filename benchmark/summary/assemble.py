"""One dataset's leaderboard, computed once for the files and the console.

The document (provenance, then per (pattern, protocol) section: summary tables, robustness,
paired comparisons, single-modality scenarios, calibration), the CSV rows and the figures to draw are all
built here from the store's runs and logged predictions; nothing is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.summary.calibration import calibration_table
from benchmark.summary.convergence import convergence_table
from benchmark.summary.document import Bullets, Document, FigureRef, Heading, HeatmapPlot, Paragraph, RatePlot
from benchmark.summary.formatting import fixed, rate_text
from benchmark.summary.headline import Headline, build_headline, headline_blocks, heatmap_plot
from benchmark.summary.load import load_all_runs, select_fingerprints
from benchmark.summary.model import Section, build_sections
from benchmark.summary.page_data import dataset_json
from benchmark.summary.predictions import PredictionStore
from benchmark.summary.provenance import provenance
from benchmark.summary.tables import comparison_tables, robustness, scenario_table, summary_tables


@dataclass
class DatasetReport:
    """Everything shown for one dataset; ``runs`` and ``sections`` are kept for the index."""

    dataset: str
    document: Document
    csv_rows: list[dict[str, Any]]
    figures: list[RatePlot]
    runs: pd.DataFrame
    sections: list[Section]
    headlines: list[Headline] = field(default_factory=list)
    heatmaps: list[HeatmapPlot] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)  # the interactive page's payload (page_data)


def build_report(tracking_uri: str, dataset: str, runs: pd.DataFrame | None = None,
                 with_predictions: bool = True, all_fingerprints: bool = False) -> DatasetReport | None:
    """Everything shown for one dataset, computed once for the files and the console."""
    runs = load_all_runs(tracking_uri, dataset) if runs is None else runs
    if runs.empty:
        return None
    runs, superseded = select_fingerprints(runs, all_fingerprints)
    sections = build_sections(runs)
    doc = Document(f"Leaderboard: {dataset}")
    lines = provenance(runs, superseded)
    doc.blocks.append(Bullets(lines))
    doc.blocks.append(Paragraph(
        "Built from MLflow alone; only statistics on the logged metrics and test predictions are computed. "
        "Intervals (95%): seed-to-seed variation plus test-sample noise (DeLong / binomial components of the logged "
        "test predictions, a test sample shared by several seeds counted once); over seeds only where a run logged no "
        "predictions or the metric has no per-sample form (CSV column `interval`). "
        "Paired tests: t-test over seeds + DeLong on pooled predictions. "
        "See README, section 'Leaderboards', for the definitions."))
    csv_rows: list[dict[str, Any]] = []
    figures: list[RatePlot] = []
    predictions = PredictionStore() if with_predictions else None
    for section in sections:
        section.use_predictions(predictions)
    headlines: list[Headline] = []
    heatmaps: list[HeatmapPlot] = []
    try:
        if sections:
            doc.blocks.append(Heading("Headline", 2))
        for section in sections:  # the compact answer first: ranking, ties per rate, heatmap
            headlines.append(build_headline(section, predictions))
            heatmaps.append(heatmap_plot(headlines[-1]))
            doc.blocks += headline_blocks(headlines[-1])
            doc.blocks.append(FigureRef(heatmaps[-1].stem, heatmaps[-1].title, svg=""))
        page = dataset_json(dataset, lines, sections, headlines, predictions, tracking_uri)
        for section in sections:
            pre = f"pattern `{section.pattern}`, protocol `{section.protocol}`"
            doc.blocks.append(Heading(f"Missing modality: {pre}", 2))
            doc.blocks.append(Paragraph(
                f"Grid: rates {', '.join(rate_text(r) for r in section.rates)}; seeds "
                f"{', '.join(str(s) for s in section.seeds)}; {len(section.method_rows())} method row(s)."))
            doc.blocks += summary_tables(section, csv_rows)
            pop = population_line(section)
            if pop:
                doc.blocks.append(Paragraph(pop))
            doc.blocks.append(Heading("Robustness to missing modalities", 3))
            doc.blocks += robustness(section, csv_rows, figures, dataset)
            doc.blocks.append(Heading("Paired comparisons", 3))
            doc.blocks += comparison_tables(section, csv_rows, predictions)
            doc.blocks.append(Heading("Single-modality scenarios", 3))
            doc.blocks.append(scenario_table(section, csv_rows))
            doc.blocks.append(Heading("Calibration", 3))
            doc.blocks.append(calibration_table(section, csv_rows))
            doc.blocks.append(Heading("Convergence", 3))
            doc.blocks.append(convergence_table(section, csv_rows))
    finally:
        if predictions is not None:
            predictions.close()
    return DatasetReport(dataset, doc, csv_rows, figures, runs, sections, headlines, heatmaps, page)


def population_line(section: Section) -> str:
    """What the oracle row means, with the population Bayes AUC per rate; "" without an oracle row."""
    refs = section.reference_rows()
    if not refs:
        return ""
    parts = []
    for rate in section.rates:
        c = section.cell(refs[0], rate, "population_auc")
        parts.append(f"{rate_text(rate)}: {fixed(c.summary.mean)}")
    return ("Bayes oracle row: the oracle's AUC on the very same test sets and masks (an upper bound, not a "
            "method). Population Bayes AUC by rate: " + ", ".join(parts) + ".")
