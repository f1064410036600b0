"""``results/README.md``: one line per dataset of the store, then the ranking across datasets.

Computation only: the document and the critical-difference plot's description are returned;
``benchmark.summary.build`` reads the store, draws and writes.  The ranking follows Demšar (2006):
average ranks over (dataset, pattern, protocol) blocks by AVG test AUC, the Friedman test and the
Nemenyi critical difference; a method missing from some block is left out rather than ranked
on fewer blocks.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.summary.document import Block, Cell, Document, FigureRef, Heading, Paragraph, RankPlot, TableView
from benchmark.summary.formatting import MISSING, fixed, p_text
from benchmark.summary.load import FAILED_STATUSES, latest_per_key
from benchmark.summary.model import Section
from benchmark.summary.provenance import commit_line, joined, latest_end
from benchmark.summary.stats import ALPHA, rank_methods

CD_STEM = "critical_difference"


def ranking_blocks(dataset_sections: dict[str, list[Section]]) -> tuple[list[Block], RankPlot | None]:
    """Average ranks across (dataset, pattern, protocol) blocks by AVG test AUC, Friedman, Nemenyi;
    with the critical-difference diagram to draw (None when there is no ranking)."""
    datasets = [d for d, secs in dataset_sections.items() if secs]
    blocks: list[Block] = [Heading("Ranking across datasets", 2)]
    if len(datasets) < 2:
        blocks.append(Paragraph(f"A ranking across datasets needs results on at least two datasets; the store has "
                                f"{len(datasets)}."))
        return blocks, None
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for dataset in datasets:
        for section in dataset_sections[dataset]:
            block = f"{dataset} ({section.pattern}/{section.protocol})"
            for row in section.method_rows():
                name = row.display if row.setting == "default" else f"{row.display} ({row.setting})"
                avg = section.average_auc(row)
                if np.isfinite(avg):
                    scores.setdefault(block, {}).setdefault(name, avg)  # rows are best-first
    block_names = sorted(scores)
    methods = sorted(set.intersection(*[set(v) for v in scores.values()])) if scores else []
    excluded = sorted(set().union(*[set(v) for v in scores.values()]) - set(methods)) if scores else []
    if len(methods) < 2 or len(block_names) < 2:
        blocks.append(Paragraph(f"Fewer than two methods have a complete AVG AUC in every block "
                                f"({len(block_names)} block(s)); no ranking."))
        return blocks, None
    matrix = np.array([[scores[b][m] for m in methods] for b in block_names])
    res = rank_methods(matrix, methods, ALPHA)
    order = np.argsort(res.average_ranks, kind="stable")
    rows = [[Cell(methods[j]), Cell(f"{res.average_ranks[j]:.2f}")] +
            [Cell(fixed(matrix[i, j])) for i in range(len(block_names))] for j in order]
    fried = (f"Friedman χ² = {res.friedman_statistic:.2f}, {p_text(res.friedman_p)}"
             if np.isfinite(res.friedman_p) else "Friedman test n/a (needs ≥ 3 methods)")
    blocks.append(TableView("Average rank by AVG test AUC (1 = best)", ["method", "avg rank"] + block_names, rows,
                            note=f"Blocks: {len(block_names)} (dataset, pattern/protocol) pairs; score = AVG test "
                                 f"AUC over the rates. {fried}. Nemenyi critical difference (α = {ALPHA:g}): "
                                 f"{fixed(res.critical_difference, 2)} — methods whose average ranks differ by less "
                                 f"are not distinguishable. With few blocks the test has little power."
                                 + (f" Not ranked (missing in some block): {', '.join(excluded)}." if excluded else ""),
                            text_columns=1))
    plot = RankPlot(CD_STEM, methods, res.average_ranks, res.critical_difference,
                    f"{len(block_names)} blocks; {fried}")
    # The SVG is filled in when the plot is drawn (document.with_svgs).
    blocks.append(FigureRef(CD_STEM, "Critical-difference diagram: methods joined by a red bar are "
                                     "not significantly different (Nemenyi).", svg=""))
    return blocks, plot


def dataset_row(dataset: str, runs: pd.DataFrame, sections: list[Section], built: bool) -> list[Cell]:
    """The index line of one dataset: links (when its files exist), grid counts, the best row of
    each section by AVG test AUC, and the latest run end."""
    latest = latest_per_key(runs)
    best = []
    for s in sections:
        for row in s.method_rows():
            avg = s.average_auc(row)
            if np.isfinite(avg):
                setting = "" if row.setting == "default" else f", {row.setting}"
                best.append(f"{row.label} {avg:.3f} ({s.pattern}/{s.protocol}{setting})")
                break
    link = (f"[md]({dataset}/leaderboard.md) · [html]({dataset}/leaderboard.html) · "
            f"[csv]({dataset}/leaderboard.csv)") if built else "not built (run `make leaderboard`)"
    return [Cell(dataset), Cell(link), Cell(str(len(latest))), Cell(str(int(latest["finished"].sum()))),
            Cell(str(int(latest["status"].isin(FAILED_STATUSES).sum()))),
            Cell("; ".join(best) or MISSING), Cell(latest_end(runs))]


def index_document(rows: list[list[Cell]], runs: pd.DataFrame,
                   dataset_sections: dict[str, list[Section]]) -> tuple[Document, RankPlot | None]:
    """The whole index from the dataset lines and every dataset's runs (concatenated) and sections."""
    doc = Document("medfusion-bench results")
    doc.blocks.append(Paragraph(
        f"Built from the MLflow store alone. Date: {latest_end(runs)} (latest run end). Commit: "
        f"{commit_line(runs, 'index')}. Machine: {joined(runs['machine'])}."))
    doc.blocks.append(TableView("Datasets", ["dataset", "leaderboard", "grid cells", "finished", "failed",
                                             "best by AVG test AUC", "latest run end"], rows, text_columns=2))
    blocks, plot = ranking_blocks(dataset_sections)
    doc.blocks += blocks
    return doc, plot
