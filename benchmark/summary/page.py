"""The interactive leaderboard page: one self-contained HTML file (rendering only).

The page is static HTML with the data embedded as ``<script type="application/json">`` (the
payload of ``benchmark.summary.page_data``), and a small dependency-free script and stylesheet
(``page_assets/page.js`` / ``page.css``) inlined: it opens offline, from ``file://``, with no CDN.
What it shows, top first: the headline (methods ranked by AVG AUC with intervals and the gap to
Bayes; per rate the best method and who is indistinguishable from it), a method x rate heatmap
(switchable scenario, colour = gap to Bayes or Δ vs a chosen method), the interactive robustness
plot, a sortable, filterable table of every cell (full statistics one click away), a per-method
view (per-seed values, stopping epochs, training curves, calibration, MLflow run ids), and the
full Markdown report collapsed at the bottom.  Every byte depends on the store only.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from benchmark.summary.page_data import page_json

ASSETS = Path(__file__).resolve().parent / "page_assets"

_BODY = """<main>
<header class="top"><h1>{title}</h1>
<label class="pick">dataset <select id="pick-dataset"></select></label>
<label class="pick">missing pattern / protocol <select id="pick-section"></select></label>
<span class="meta" id="meta"></span></header>
<noscript><p>This page needs JavaScript for its interactive part; the full report is below.</p></noscript>
<div class="grid2">
<section class="card" id="headline"><h2>Ranking by AVG test AUC</h2>
<div class="scroll"><table id="ranking"><thead><tr><th>#</th><th class="l">method</th><th>AVG AUC</th>
<th class="l">95% interval</th><th>gap to Bayes</th><th></th></tr></thead><tbody></tbody></table></div>
<p class="note">AVG = each seed's mean test AUC over the rates, then the mean over seeds; interval: seeds and
test samples. Gap = AVG − the Bayes oracle's AVG on the same test sets. Click a method for its runs.</p></section>
<section class="card"><h2>Best method at each rate, and who ties with it</h2><ul class="verdicts" id="verdicts"></ul>
<p class="note"><span class="chip best">best</span> highest mean test AUC at the rate;
<span class="chip tie">tied</span> paired comparison with the best not significant (t-test over seeds and
DeLong, α = 0.05; not evidence of equality); grey: significantly worse.</p></section>
</div>
<div class="grid2">
<section class="card"><h2>Test AUC by method and rate <span class="tools">
<label class="pick">scenario <select id="pick-scenario"></select></label>
<label class="pick">colour <select id="pick-colour"></select></label></span></h2>
<div class="scroll"><table class="heat" id="heatmap"></table></div>
<p class="note">Number: mean over seeds; hover for the interval and n; outlined: best at the rate (test mask
scenario), bold: indistinguishable from it. Click a cell for the method's runs.</p></section>
<section class="card"><h2>Robustness: AUC vs missing rate</h2><div id="plot"></div>
<div class="legend" id="plot-legend"></div>
<p class="note">Bars: 95% intervals; dashed black: Bayes oracle (shaded: its interval). Click a legend entry to
hide or show a line; hover a point for its values.</p></section>
</div>
<section class="card" style="margin-top:12px"><h2>Every cell <span class="tools" id="cells-count"></span></h2>
<div class="filters" id="filters"><label>method <input id="f-text" type="search" placeholder="filter"></label>
<label>pattern <select id="f-pattern"></select></label><label>protocol <select id="f-protocol"></select></label>
<label>scenario <select id="f-scenario"></select></label><label>rate <select id="f-rate"></select></label>
<label>training <select id="f-training"></select></label></div>
<div class="scroll" style="max-height:460px"><table class="sortable" id="cells"><thead></thead><tbody></tbody></table></div>
<p class="note">Click a header to sort, a row for its full statistics (mean ± std, interval, missing seeds,
paired tests).</p></section>
<section class="card" style="margin-top:12px" id="method"><h2>Per method <span class="tools">
<label class="pick">method <select id="pick-method"></select></label>
<label class="pick">rate <select id="pick-rate"></select></label></span></h2><div id="method-body"></div></section>
<details class="card" style="margin-top:12px"><summary>Provenance</summary><ul id="provenance"></ul></details>
{extra}
</main>
<div class="tip" id="tip"></div>
"""


def asset(name: str) -> str:
    """An inlined asset's text (``page_assets/<name>``)."""
    return (ASSETS / name).read_text()


def render_page(title: str, datasets: Sequence[dict[str, Any]], report_html: str = "", links: str = "",
                mlflow_ui: str | None = None) -> str:
    """The page for ``datasets`` (one payload each, ``page_data.dataset_json``); ``report_html`` is the
    full report (every table), shown collapsed; ``links`` an optional HTML list of other pages."""
    payload = {"datasets": list(datasets), "ui": mlflow_ui.rstrip("/") if mlflow_ui else None}
    extra = links
    if report_html:
        extra += ('<details class="report"><summary>Full report: every table, as in leaderboard.md</summary>\n'
                  f"{report_html}\n</details>")
    body = _BODY.replace("{title}", html.escape(title)).replace("{extra}", extra)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{asset('page.css')}</style>\n</head>\n<body>\n{body}"
            f"<script type=\"application/json\" id=\"leaderboard-data\">{page_json(payload)}</script>\n"
            f"<script>\n{asset('page.js')}</script>\n</body>\n</html>\n")
