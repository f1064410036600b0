"""What a leaderboard shows, as plain data: headings, paragraphs, tables of formatted cells, figures.

A document is computed once per dataset (``benchmark.summary.assemble``) and then only turned
into files or console output (``render``, ``plots``), so the Markdown, the HTML page and the
console always show the same numbers.  Figures are described here (``RatePlot``, ``RankPlot``)
and drawn later; their ``FigureRef`` carries the SVG text once drawn (``with_svgs``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union


@dataclass(frozen=True)
class Cell:
    """One formatted table cell; ``kind`` styles it: "" | "missing" | "ns" | "sig" | "ref"."""

    text: str
    bold: bool = False
    kind: str = ""


@dataclass
class TableView:
    """A titled table of formatted cells with an explanatory note (what the numbers mean)."""

    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""
    text_columns: int = 2  # leading label columns, left-aligned; the rest are numbers


@dataclass
class Heading:
    """A section heading; level 2 headings also rule the console output."""

    text: str
    level: int = 2


@dataclass
class Paragraph:
    """Running text; Markdown bold, inline code and links are the only markup it may carry."""

    text: str


@dataclass
class Bullets:
    """A bullet list (the provenance lines)."""

    items: list[str]


@dataclass
class FigureRef:
    """A plot written next to the document as ``<stem>.png`` / ``<stem>.svg``; ``svg`` is inlined in HTML."""

    stem: str
    caption: str
    svg: str


Block = Union[Heading, Paragraph, Bullets, TableView, FigureRef]


@dataclass
class Document:
    """A title and its blocks, in reading order: what every output format renders."""

    title: str
    blocks: list[Block] = field(default_factory=list)


def with_svgs(blocks: Sequence[Block], svgs: Mapping[str, str]) -> list[Block]:
    """The blocks with each drawn figure's SVG text filled in (figures are described before they
    are drawn, so the document can be computed without writing a file)."""
    return [FigureRef(b.stem, b.caption, svgs[b.stem]) if isinstance(b, FigureRef) and b.stem in svgs else b
            for b in blocks]


@dataclass
class Curve:
    """One line of a metric-vs-rate plot: means with optional 95% interval bounds."""

    label: str
    rates: Sequence[float]
    means: Sequence[float]
    lows: Sequence[float]
    highs: Sequence[float]
    reference: bool = False
    style: str = ""  # "" | "evidence": the independent-evidence ceiling (a second reference, dotted grey)


@dataclass(frozen=True)
class RatePlot:
    """A metric-vs-missing-rate figure to draw as ``<stem>.png/.svg`` (``plots.plot_metric_vs_rate``)."""

    stem: str
    curves: list[Curve]
    title: str
    xlabel: str
    ylabel: str


@dataclass(frozen=True)
class RankPlot:
    """A critical-difference diagram to draw as ``<stem>.png/.svg`` (``plots.plot_critical_difference``)."""

    stem: str
    methods: list[str]
    ranks: Sequence[float]
    critical_difference: float
    title: str


@dataclass(frozen=True)
class HeatmapPlot:
    """A method x rate heatmap to draw as ``<stem>.png/.svg`` (``heatmap.draw_heatmap``): the number
    in each cell is ``values`` (mean test AUC), its colour ``colours`` (gap to Bayes, or Δ vs best)."""

    stem: str
    methods: list[str]
    rates: list[float]
    values: list[list[float]]
    colours: list[list[float]]
    title: str
    colour_label: str
    marks: list[list[str]] = field(default_factory=list)  # per cell "best" | "tie" | "" (the paired verdicts)
