"""Figures of the leaderboards: metric vs missing rate, and the critical-difference diagram.

Drawing only (file output); what to draw is computed elsewhere (``RatePlot`` / ``RankPlot`` in
``benchmark.summary.document``).  matplotlib's Agg/SVG backends are used through the Figure API
(no pyplot state), with a fixed ``svg.hashsalt`` and fixed metadata, so the PNG and SVG bytes
depend only on the data: rebuilding from the same MLflow store is byte-identical.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from benchmark.summary.document import Curve, RankPlot, RatePlot
from benchmark.summary.stats import ALPHA

# Fixed figure metadata: no creation date, no version strings that would change the bytes.
PNG_METADATA = {"Software": "medfusion-bench"}
SVG_METADATA = {"Creator": "medfusion-bench", "Date": None, "Format": None, "Type": None}


def figure_files(out_stem: Path) -> list[Path]:
    """The two files a figure is written to: ``<stem>.png`` and ``<stem>.svg``."""
    return [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]


def _save(fig: Figure, out_stem: Path, salt: str) -> str:
    """Write ``<stem>.png`` and ``<stem>.svg`` deterministically; return the SVG text."""
    png, svg_path = figure_files(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110, metadata=PNG_METADATA)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata=SVG_METADATA)
    svg = buf.getvalue()
    svg_path.write_text(svg)
    return svg


def plot_metric_vs_rate(curves: Sequence[Curve], out_stem: Path, title: str, xlabel: str, ylabel: str) -> str:
    """Metric against missing rate, one solid line per method with 95% interval error bars, the
    Bayes reference dashed (black), the independent-evidence ceiling (when the oracle logged it)
    dotted (grey).  Uses the Figure API, so no pyplot backend is touched."""
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
        if curve.style == "evidence":  # the second reference: the independent-evidence ceiling
            ax.plot(r[ok], m[ok], linestyle=":", color="#555555", linewidth=1.8, marker="", label=curve.label,
                    zorder=3)
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
        ax.text(lo + cd / 2, 1.3, f"CD = {cd:.2f} (Nemenyi, α = {ALPHA:g})", ha="center", va="bottom", fontsize=9)
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


def draw_rate_plot(plot: RatePlot, out_dir: Path) -> str:
    """Draw a described metric-vs-rate figure into ``out_dir``; return its SVG text."""
    return plot_metric_vs_rate(plot.curves, out_dir / plot.stem, plot.title, plot.xlabel, plot.ylabel)


def draw_rank_plot(plot: RankPlot, out_dir: Path) -> str:
    """Draw a described critical-difference diagram into ``out_dir``; return its SVG text."""
    return plot_critical_difference(plot.methods, plot.ranks, plot.critical_difference, out_dir / plot.stem,
                                    plot.title)
