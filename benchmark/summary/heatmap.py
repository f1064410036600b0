"""The static method x rate heatmap of the Markdown headline (drawing only).

Same rules as ``benchmark.summary.plots``: the Figure API (no pyplot state), fixed metadata and
``svg.hashsalt``, so the bytes depend on the data only and a rebuild is byte-identical.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from benchmark.summary.document import HeatmapPlot
from benchmark.summary.plots import PNG_METADATA, SVG_METADATA, figure_files


def draw_heatmap(plot: HeatmapPlot, out_dir: Path) -> str:
    """Write ``<stem>.png`` and ``<stem>.svg`` into ``out_dir``; return the SVG text."""
    values = np.asarray(plot.values, dtype=float).reshape(len(plot.methods), len(plot.rates))
    colours = np.asarray(plot.colours, dtype=float).reshape(values.shape)
    width = 2.6 + 0.95 * len(plot.rates)
    fig = Figure(figsize=(width, 1.1 + 0.36 * len(plot.methods)), layout="constrained")
    ax = fig.add_subplot()
    finite = colours[np.isfinite(colours)]
    lo = float(finite.min()) if finite.size else -0.1
    vmin = min(lo, -1e-3)
    masked = np.ma.masked_invalid(colours)
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#eeeeee")
    image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=0.0, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = f"{values[i, j]:.3f}" if np.isfinite(values[i, j]) else "—"
            mark = plot.marks[i][j] if i < len(plot.marks) and j < len(plot.marks[i]) else ""
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="#111111",
                    fontweight="bold" if mark else "normal")
            if mark == "best":
                ax.add_patch(Rectangle((j - 0.46, i - 0.42), 0.92, 0.84, fill=False, edgecolor="#111111", linewidth=1.4))
    ax.set_xticks(range(len(plot.rates)), [f"{r:g}" for r in plot.rates])
    ax.set_yticks(range(len(plot.methods)), plot.methods, fontsize=8)
    ax.set_xlabel("missing rate", fontsize=9)
    ax.set_title(plot.title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(plot.colour_label, fontsize=8)
    png, svg_path = figure_files(out_dir / plot.stem)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110, metadata=PNG_METADATA)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": plot.stem, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata=SVG_METADATA)
    svg = buf.getvalue()
    svg_path.write_text(svg)
    return svg
