"""Rendering of leaderboard documents: Markdown, one self-contained HTML page, rich, plots.

``benchmark.leaderboard`` computes a document once (headings, paragraphs, tables of already
formatted cells, figures); this module only turns it into files or console output, so the
Markdown, the HTML page and the console always show the same numbers.  Every output is a pure
function of the document: plots use matplotlib's Agg/SVG backends with a fixed ``svg.hashsalt``
and fixed metadata, so rebuilding from the same MLflow store is byte-identical.
"""
from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

# Fixed figure metadata: no creation date, no version strings that would change the bytes.
PNG_METADATA = {"Software": "medfusion-bench"}
SVG_METADATA = {"Creator": "medfusion-bench", "Date": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Cell:
    """One formatted table cell; ``kind`` styles it: "" | "missing" | "ns" | "sig" | "ref"."""

    text: str
    bold: bool = False
    kind: str = ""


@dataclass
class TableView:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    note: str = ""
    text_columns: int = 2  # leading label columns, left-aligned; the rest are numbers


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
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
    title: str
    blocks: list[Block] = field(default_factory=list)


# ----------------------------------------------------------------------------- Markdown

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(table: TableView) -> list[str]:
    """A GitHub pipe table; written by hand so the bytes never depend on column-width heuristics."""
    def fmt(cell: Cell) -> str:
        text = _md_escape(cell.text)
        return f"**{text}**" if cell.bold and text else text

    lines = ["| " + " | ".join(_md_escape(c) for c in table.columns) + " |",
             "|" + "|".join(":---" if i < table.text_columns else "---:" for i in range(len(table.columns))) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in table.rows]
    return lines


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, TableView):
            if block.title:
                lines += [f"**{block.title}**", ""]
            lines += markdown_table(block) + [""]
            if block.note:
                lines += [block.note, ""]
        elif isinstance(block, FigureRef):
            lines += [f"![{block.caption}]({block.stem}.png)", "", f"*{block.caption}* "
                      f"([SVG]({block.stem}.svg))", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#1b1f24;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;border-bottom:2px solid #d0d7de;padding-bottom:.2em}
h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.15em}
h3{font-size:1.1em;margin-top:1.3em}
table{border-collapse:collapse;margin:.4em 0 .3em;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;vertical-align:top}
th{background:#f6f8fa}
td{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.label{text-align:left}
td.missing{color:#b35900;background:#fff8f0}
td.ns{color:#6e7781;white-space:normal;min-width:15em}
td.sig{color:#0a3069;white-space:normal;min-width:15em}
td.ref{color:#6e7781;font-style:italic}
p.note{font-size:12px;color:#57606a;margin-top:0}
code{background:#f6f8fa;padding:0 3px;border-radius:3px}
figure{margin:.6em 0}
figcaption{font-size:12px;color:#57606a}
figure svg{width:960px;max-width:100%;height:auto}
"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown spans the documents use: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


def html_table(table: TableView) -> str:
    parts = ["<table>"]
    if table.title:
        parts.append(f"<caption>{_inline(table.title)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr></thead>")
    parts.append("<tbody>")
    for row in table.rows:
        cells = []
        for cell in row:
            text = html.escape(cell.text)
            if cell.bold:
                text = f"<strong>{text}</strong>"
            classes = " ".join(c for c in (cell.kind, "label" if len(cells) < table.text_columns else "") if c)
            cls = f' class="{classes}"' if classes else ""
            cells.append(f"<td{cls}>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    if table.note:
        parts.append(f'<p class="note">{_inline(table.note)}</p>')
    return "\n".join(parts)


def _strip_svg_prolog(svg: str) -> str:
    """Inline SVG must start at ``<svg``: drop the XML declaration and DOCTYPE."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def render_html(doc: Document) -> str:
    """One page, no external resource: CSS inline, plots as inline SVG (readable offline)."""
    body = [f"<h1>{html.escape(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, TableView):
            body.append(html_table(block))
        elif isinstance(block, FigureRef):
            body.append(f"<figure>{_strip_svg_prolog(block.svg)}<figcaption>{_inline(block.caption)}"
                        f"</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(doc.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ----------------------------------------------------------------------------- rich

def rich_tables(doc: Document, console) -> None:
    """Print every table of the document (same cells as the files) with rich."""
    from rich.table import Table

    styles = {"missing": "dark_orange", "ns": "grey50", "sig": "", "ref": "italic grey50"}
    for block in doc.blocks:
        if isinstance(block, Heading) and block.level <= 2:
            console.rule(_plain(block.text))
        elif isinstance(block, TableView):
            table = Table(title=_rich_escape(_plain(block.title)), title_justify="left", caption=None)
            for i, col in enumerate(block.columns):
                table.add_column(col, justify="left" if i < block.text_columns else "right", overflow="fold")
            for row in block.rows:
                table.add_row(*[f"[{'bold ' if c.bold else ''}{styles.get(c.kind, '')}]"
                                f"{_rich_escape(c.text)}[/]" if (c.bold or styles.get(c.kind)) else _rich_escape(c.text)
                                for c in row])
            console.print(table)


def _plain(text: str) -> str:
    """Console text: the Markdown emphasis and code marks removed."""
    return text.replace("**", "").replace("`", "")


def _rich_escape(text: str) -> str:
    from rich.markup import escape
    return escape(text)


# ----------------------------------------------------------------------------- plots

@dataclass
class Curve:
    """One line of a metric-vs-rate plot: means with optional 95% interval bounds."""

    label: str
    rates: Sequence[float]
    means: Sequence[float]
    lows: Sequence[float]
    highs: Sequence[float]
    reference: bool = False


def _save(fig, out_stem: Path, salt: str) -> str:
    """Write ``<stem>.png`` and ``<stem>.svg`` deterministically; return the SVG text."""
    import matplotlib

    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_stem.with_suffix(".png"), dpi=110, metadata=PNG_METADATA)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata=SVG_METADATA)
    svg = buf.getvalue()
    out_stem.with_suffix(".svg").write_text(svg)
    return svg


def plot_metric_vs_rate(curves: Sequence[Curve], out_stem: Path, title: str, xlabel: str, ylabel: str) -> str:
    """Metric against missing rate, one solid line per method with 95% interval error bars, the
    Bayes reference dashed (black).  Uses the Figure API, so no pyplot backend is touched."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    colours = [c for c in _palette()]
    markers = "osD^vP*Xh<>"
    # Dodge the methods a little along x so overlapping error bars stay distinguishable.
    n_methods = sum(1 for c in curves if not c.reference)
    all_r = [float(x) for c in curves for x in c.rates]
    span = (max(all_r) - min(all_r)) if all_r else 0.0
    step = 0.012 * span if span > 0 else 0.01
    i = 0
    for curve in curves:
        r = np.asarray(curve.rates, float)
        m = np.asarray(curve.means, float)
        lo = np.asarray(curve.lows, float)
        hi = np.asarray(curve.highs, float)
        ok = np.isfinite(m)
        if not ok.any():
            continue
        if curve.reference:
            ax.plot(r[ok], m[ok], linestyle="--", color="black", linewidth=1.8, marker="", label=curve.label,
                    zorder=3)
            band = ok & np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                ax.fill_between(r[band], lo[band], hi[band], color="black", alpha=0.08, linewidth=0)
            continue
        colour = colours[i % len(colours)]
        marker = markers[i % len(markers)]
        r = r + (i - (n_methods - 1) / 2) * step
        i += 1
        err_ok = ok & np.isfinite(lo) & np.isfinite(hi)
        yerr = np.vstack([np.where(err_ok, m - lo, 0.0), np.where(err_ok, hi - m, 0.0)])[:, ok]
        ax.errorbar(r[ok], m[ok], yerr=yerr, color=colour, marker=marker, markersize=5, linewidth=1.6,
                    capsize=3, label=curve.label, zorder=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    all_rates = sorted({float(x) for c in curves for x in c.rates})
    if all_rates:
        ax.set_xticks(all_rates)
        ax.set_xticklabels([f"{x:g}" for x in all_rates])
    ax.grid(True, color="#dddddd", linewidth=0.6)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
                  title="method (95% CI over seeds;\nmarkers dodged along x)", title_fontsize=9)
    return _save(fig, out_stem, salt=out_stem.name)


def plot_critical_difference(methods: Sequence[str], ranks: Sequence[float], cd: float, out_stem: Path,
                             title: str) -> str:
    """Demšar-style diagram: average ranks on a line (1 = best, left), the Nemenyi CD as a bar,
    and thick lines joining methods whose ranks differ by less than the CD (not distinguishable)."""
    from matplotlib.figure import Figure

    k = len(methods)
    order = np.argsort(np.asarray(ranks, float), kind="stable")
    names = [methods[j] for j in order]
    vals = [float(ranks[j]) for j in order]
    height = 1.5 + 0.25 * ((k + 1) // 2)
    fig = Figure(figsize=(9.0, height), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = 1.0, float(max(k, 2))
    ax.set_xlim(lo - 0.3, hi + 0.3)
    half = (k + 1) // 2
    ax.set_ylim(-(half * 0.6 + 0.5), 1.8)
    ax.axhline(0, color="black", linewidth=1)
    for t in range(1, int(hi) + 1):
        ax.plot([t, t], [0, 0.15], color="black", linewidth=1)
        ax.text(t, 0.3, str(t), ha="center", va="bottom", fontsize=9)
    if np.isfinite(cd):
        ax.plot([lo, lo + cd], [1.2, 1.2], color="black", linewidth=2)
        ax.text(lo + cd / 2, 1.3, f"CD = {cd:.2f} (Nemenyi, α = 0.05)", ha="center", va="bottom", fontsize=9)
    half = (k + 1) // 2
    for i, (name, v) in enumerate(zip(names, vals)):
        left = i < half
        depth = -(i + 1) if left else -(k - i)
        x_text = lo - 0.25 if left else hi + 0.25
        ax.plot([v, v, x_text], [0, depth * 0.6, depth * 0.6], color="#333333", linewidth=0.9)
        ax.text(x_text + (-0.04 if left else 0.04), depth * 0.6, f"{name} ({v:.2f})",
                ha="right" if left else "left", va="center",
                fontsize=9)
    if np.isfinite(cd):
        groups = []
        for i in range(k):
            j = i
            while j + 1 < k and vals[j + 1] - vals[i] < cd:
                j += 1
            if j > i and not any(g[0] <= i and j <= g[1] for g in groups):
                groups.append((i, j))
        for n, (i, j) in enumerate(groups):
            y = -0.25 - 0.18 * n
            ax.plot([vals[i] - 0.03, vals[j] + 0.03], [y, y], color="#c0392b", linewidth=3.5, solid_capstyle="round")
    ax.set_title(f"{title}\naverage rank (1 = best)", fontsize=10)
    ax.axis("off")
    return _save(fig, out_stem, salt=out_stem.name)


def _palette() -> list[str]:
    # tab10 minus its black-ish grey so the dashed black Bayes line stays distinct.
    return ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
