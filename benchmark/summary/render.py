"""Rendering of leaderboard documents: Markdown, one self-contained HTML page, rich tables.

Every output is a pure function of the ``Document`` (``benchmark.summary.document``): the
Markdown and HTML are written by hand, so the bytes never depend on a library's layout
heuristics, and rebuilding from the same MLflow store is byte-identical.  Figures are drawn by
``benchmark.summary.plots``; this module only inlines their SVG text.
"""
from __future__ import annotations

import html
import re
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from benchmark.summary.document import Bullets, Cell, Document, FigureRef, Heading, Paragraph, TableView
from benchmark.summary.formatting import rate_text, signed
from benchmark.summary.headline import Headline, avg_text, standing

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
    """The document as GitHub Markdown (figures as PNG images with a link to the SVG)."""
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
div.wide{overflow-x:auto;max-width:100%}
"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown spans the documents use: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


def html_table(table: TableView) -> str:
    """An HTML table; the cell ``kind`` becomes its CSS class, so missing / n.s. / sig. cells are styled."""
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


def html_body(doc: Document) -> str:
    """The document's blocks as HTML (no page around them); wide tables scroll in their own box."""
    body = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, TableView):
            body.append(f'<div class="wide">{html_table(block)}</div>')
        elif isinstance(block, FigureRef):
            body.append(f"<figure>{_strip_svg_prolog(block.svg)}<figcaption>{_inline(block.caption)}"
                        f"</figcaption></figure>")
    return "\n".join(body)


def render_html(doc: Document) -> str:
    """One page, no external resource: CSS inline, plots as inline SVG (readable offline)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(doc.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(doc.title)}</h1>\n{html_body(doc)}\n</body>\n</html>\n")


# ----------------------------------------------------------------------------- rich

def rich_tables(doc: Document, console: Console) -> None:
    """Print every table of the document (same cells as the files) with rich."""
    styles = {"missing": "dark_orange", "ns": "grey50", "sig": "", "ref": "italic grey50"}
    for block in doc.blocks:
        if isinstance(block, Heading) and block.level <= 2:
            console.rule(_plain(block.text))
        elif isinstance(block, TableView):
            table = Table(title=escape(_plain(block.title)), title_justify="left", caption=None)
            for i, col in enumerate(block.columns):
                table.add_column(col, justify="left" if i < block.text_columns else "right", overflow="fold")
            for row in block.rows:
                table.add_row(*[f"[{'bold ' if c.bold else ''}{styles.get(c.kind, '')}]"
                                f"{escape(c.text)}[/]" if (c.bold or styles.get(c.kind)) else escape(c.text)
                                for c in row])
            console.print(table)


def _plain(text: str) -> str:
    """Console text: the Markdown emphasis and code marks removed."""
    return text.replace("**", "").replace("`", "")


def rich_headline(dataset: str, headlines: Sequence[Headline], console: Console, width: int = 100) -> None:
    """The terminal summary: per section the ranking and one line per rate, within ``width`` columns
    (the full tables are in the files)."""
    width = min(width, console.width)
    console.print(Rule(f"[bold]{escape(dataset)}[/]"), width=width)
    for h in headlines:
        s = h.section
        table = Table(title=escape(f"{s.pattern} / {s.protocol}: ranked by AVG test AUC"), title_justify="left",
                      width=width)
        for col, justify in (("#", "right"), ("method", "left"), ("AVG AUC [95% CI]", "right"),
                             ("gap to Bayes", "right"), ("best / tied at rate", "left")):
            table.add_column(col, justify=justify, overflow="fold")
        for i, r in enumerate(h.ranked, 1):
            label = r.row.label if r.row.setting == "default" else f"{r.row.label} ({r.row.setting})"
            table.add_row(str(i), escape(label), avg_text(r.avg), signed(r.gap), escape(standing(h, r.row)))
        console.print(table)
        for v in h.verdicts:
            console.print(_plain(v.sentence()), markup=False, width=width, soft_wrap=False)
        gaps = [f"{r.row.label} @ {rate_text(rate)}: {c.reasons()}" for r in h.ranked for rate in s.rates
                if (c := s.cell(r.row, rate, "test_auc")).n < c.n_expected]
        if gaps:
            shown = "; ".join(gaps[:6]) + (f"; … {len(gaps) - 6} more" if len(gaps) > 6 else "")
            console.print(f"incomplete cells: {shown}", markup=False, width=width)
