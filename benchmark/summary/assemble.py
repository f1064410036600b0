"""One dataset's leaderboard, computed once for the files and the console.

The document (provenance, then per (pattern, protocol) section: summary tables, robustness,
paired comparisons, single-modality scenarios), the CSV rows and the figures to draw are all
built here from the store's runs and logged predictions; nothing is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.summary.document import Bullets, Document, Heading, Paragraph, RatePlot
from benchmark.summary.formatting import fixed, rate_text
from benchmark.summary.load import load_all_runs
from benchmark.summary.model import Section, build_sections
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


def build_report(tracking_uri: str, dataset: str, runs: pd.DataFrame | None = None,
                 with_predictions: bool = True) -> DatasetReport | None:
    """Everything shown for one dataset, computed once for the files and the console."""
    runs = load_all_runs(tracking_uri, dataset) if runs is None else runs
    if runs.empty:
        return None
    sections = build_sections(runs)
    doc = Document(f"Leaderboard: {dataset}")
    doc.blocks.append(Bullets(provenance(runs)))
    doc.blocks.append(Paragraph(
        "Built from MLflow alone; only statistics on the logged metrics and test predictions are computed. "
        "Intervals: 95% Student t over seeds. Paired tests: t-test over seeds + DeLong on pooled predictions. "
        "See README, section 'Leaderboards', for the definitions."))
    csv_rows: list[dict[str, Any]] = []
    figures: list[RatePlot] = []
    predictions = PredictionStore() if with_predictions else None
    try:
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
    finally:
        if predictions is not None:
            predictions.close()
    return DatasetReport(dataset, doc, csv_rows, figures, runs, sections)


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
