"""The headline of a section: methods ranked by AVG test AUC with the gap to Bayes, and per rate
the best method and the methods indistinguishable from it (computation only).

"Indistinguishable" is the paired verdict of ``benchmark.summary.compare`` against the best method
at that rate (highest mean test AUC, as in the paired table): **n.s.** means the seed-paired t-test
or DeLong did not reject at ``ALPHA``.  It is not evidence that the two are equal.  The Markdown,
the interactive page and the terminal summary all read the same ``Headline``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from benchmark.summary.compare import Comparison, compare
from benchmark.summary.contrast import EVIDENCE_LABEL, ceiling_average
from benchmark.summary.document import Block, Bullets, Cell, HeatmapPlot, TableView
from benchmark.summary.formatting import MISSING, fixed, rate_text, signed
from benchmark.summary.model import CellStat, Row, Section
from benchmark.summary.predictions import PredictionStore
from benchmark.summary.stats import ALPHA, mean_over_rates


@dataclass
class Ranked:
    """One method row of the headline: its AVG test AUC and the gap to the Bayes oracle's AVG."""

    row: Row
    avg: CellStat
    gap: float  # AVG(method) - AVG(Bayes oracle); NaN without an oracle row


@dataclass
class RateVerdict:
    """At one rate: the best method, who is indistinguishable from it, who is significantly worse."""

    rate: float
    best: Row | None
    best_cell: CellStat | None
    ties: list[Comparison] = field(default_factory=list)
    worse: list[Comparison] = field(default_factory=list)
    untested: list[Row] = field(default_factory=list)  # no paired seeds with the best

    def sentence(self) -> str:
        """One line: "rate 0.5: best X 0.812 [0.79, 0.83]; indistinguishable: Y (Δ −0.004); ..."."""
        head = f"rate {rate_text(self.rate)}: "
        if self.best is None or self.best_cell is None:
            return head + "no method has a value."
        s = self.best_cell.summary
        ci = f" [{fixed(s.ci_low)}, {fixed(s.ci_high)}]" if np.isfinite(s.ci_low) else ""
        text = head + f"best **{self.best.label}** {fixed(s.mean)}{ci}; "
        if self.ties:
            text += "indistinguishable (n.s.): " + ", ".join(
                f"{c.row.label} (Δ {signed(c.paired.diff.mean)})" for c in self.ties if c.paired is not None)
        else:
            text += "every other method significantly worse" if self.worse else "no other method compared"
        if self.worse and self.ties:
            text += "; significantly worse: " + ", ".join(c.row.label for c in self.worse)
        if self.untested:
            text += "; not compared (no paired seeds): " + ", ".join(r.label for r in self.untested)
        return text + "."

    def status(self, row: Row) -> str:
        """"best" | "tie" | "worse" | "untested" | "" for one method row."""
        if self.best is not None and row.id == self.best.id:
            return "best"
        for kind, comps in (("tie", self.ties), ("worse", self.worse)):
            if any(c.row.id == row.id for c in comps):
                return kind
        return "untested" if any(r.id == row.id for r in self.untested) else ""


@dataclass
class Headline:
    """A section's ranking, its Bayes reference and one verdict per rate."""

    section: Section
    ranked: list[Ranked]
    bayes: CellStat | None
    verdicts: list[RateVerdict]
    evidence: CellStat | None = None  # the independent-evidence ceiling's AVG, when the oracle logged it


def best_per_rate(section: Section) -> dict[float, Row | None]:
    """The method row with the highest mean test AUC at each rate (the paired table's reference)."""
    out: dict[float, Row | None] = {}
    for rate in section.rates:
        scored = [(section.cell(r, rate, "test_auc").summary.mean, r) for r in section.method_rows()]
        scored = [(m, r) for m, r in scored if np.isfinite(m)]
        out[rate] = max(scored, key=lambda t: t[0])[1] if scored else None
    return out


def build_headline(section: Section, predictions: PredictionStore | None) -> Headline:
    """Rank the method rows by AVG test AUC (the section's row order) and judge every rate."""
    refs = section.reference_rows()
    bayes = section.per_seed_aggregate(refs[0], "test_auc", mean_over_rates) if refs else None
    bayes_mean = bayes.summary.mean if bayes is not None else math.nan
    ranked = []
    for row in section.method_rows():
        avg = section.per_seed_aggregate(row, "test_auc", mean_over_rates)
        gap = avg.summary.mean - bayes_mean if np.isfinite(bayes_mean) else math.nan
        ranked.append(Ranked(row, avg, gap))
    verdicts = []
    for rate, best in best_per_rate(section).items():
        v = RateVerdict(rate, best, section.cell(best, rate, "test_auc") if best is not None else None)
        for row in section.method_rows():
            if best is None or row.id == best.id:
                continue
            comp = compare(section, row, best, rate, predictions)
            if comp.paired is None or comp.paired.n == 0:
                v.untested.append(row)
            elif comp.significant:
                v.worse.append(comp)
            else:
                v.ties.append(comp)
        verdicts.append(v)
    return Headline(section, ranked, bayes, verdicts, ceiling_average(section))


def standing(headline: Headline, row: Row) -> str:
    """Where a method is best or indistinguishable from the best: "best 0, 0.5; tied 0.3"."""
    best = [rate_text(v.rate) for v in headline.verdicts if v.status(row) == "best"]
    tied = [rate_text(v.rate) for v in headline.verdicts if v.status(row) == "tie"]
    parts = ([f"best {', '.join(best)}"] if best else []) + ([f"tied {', '.join(tied)}"] if tied else [])
    return "; ".join(parts) or MISSING


def avg_text(c: CellStat) -> str:
    """AVG AUC [95% interval], with the seed count when some seed lacks a rate."""
    s = c.summary
    if c.n == 0:
        return f"{MISSING} (n=0 of {c.n_expected})"
    ci = f" [{fixed(s.ci_low)}, {fixed(s.ci_high)}]" if np.isfinite(s.ci_low) else ""
    return fixed(s.mean) + ci + (f" (n={c.n} of {c.n_expected})" if c.n < c.n_expected else "")


def headline_table(headline: Headline) -> TableView:
    """rank | method | training | AVG AUC [interval] | gap to Bayes | best / tied at rates."""
    rows = []
    for i, r in enumerate(headline.ranked, 1):
        rows.append([Cell(str(i)), Cell(r.row.label), Cell(r.row.setting), Cell(avg_text(r.avg)),
                     Cell(signed(r.gap)), Cell(standing(headline, r.row))])
    if headline.bayes is not None:
        ref = headline.section.reference_rows()[0]
        rows.append([Cell(MISSING), Cell(ref.label), Cell(MISSING), Cell(avg_text(headline.bayes), kind="ref"),
                     Cell("0.000", kind="ref"), Cell("reference", kind="ref")])
    if headline.evidence is not None and headline.bayes is not None:
        gap = headline.evidence.summary.mean - headline.bayes.summary.mean
        rows.append([Cell(MISSING), Cell(EVIDENCE_LABEL), Cell(MISSING), Cell(avg_text(headline.evidence), kind="ref"),
                     Cell(signed(gap), kind="ref"), Cell("reference (sum of the marginal LLRs)", kind="ref")])
    s = headline.section
    return TableView(
        f"Headline (pattern `{s.pattern}`, protocol `{s.protocol}`): methods ranked by AVG test AUC",
        ["rank", "method", "training", "AVG AUC [95% interval]", "gap to Bayes", "best or indistinguishable at rate"],
        rows, text_columns=3,
        note=f"AVG = each seed's mean over the {len(s.rates)} rates, then over seeds. Gap = AVG − the Bayes oracle's "
             f"AVG on the same test sets. Indistinguishable = the paired comparison with the best method at that "
             f"rate is n.s. (t-test over seeds and DeLong, α = {ALPHA:g}); not evidence of equality.")


def headline_blocks(headline: Headline) -> list[Block]:
    """The compact table and one sentence per rate (Markdown / console)."""
    return [headline_table(headline), Bullets([v.sentence() for v in headline.verdicts])]


def heatmap_plot(headline: Headline) -> HeatmapPlot:
    """The Markdown's heatmap: mean test AUC per method and rate, coloured by the gap to the Bayes
    oracle at that rate (by the Δ vs the best method when the section has no oracle)."""
    s = headline.section
    refs = s.reference_rows()
    best = best_per_rate(s)
    values, colours = [], []
    for r in headline.ranked:
        means = [s.cell(r.row, rate, "test_auc").summary.mean for rate in s.rates]
        if refs:
            ref = [s.cell(refs[0], rate, "test_auc").summary.mean for rate in s.rates]
        else:
            ref = [s.cell(best[rate], rate, "test_auc").summary.mean if best[rate] else math.nan for rate in s.rates]
        values.append(means)
        colours.append([m - b if np.isfinite(m) and np.isfinite(b) else math.nan for m, b in zip(means, ref)])
    label = "gap to Bayes (AUC)" if refs else "Δ vs best at the rate (AUC)"
    marks = [[v.status(r.row) if v.status(r.row) in ("best", "tie") else "" for v in headline.verdicts]
             for r in headline.ranked]
    names = [r.row.label if r.row.setting == "default" else f"{r.row.label} ({r.row.setting})" for r in headline.ranked]
    return HeatmapPlot(f"heatmap_{s.slug}", names, list(s.rates), values, colours,
                       f"test AUC ({s.pattern}, {s.protocol}); colour: {label}; boxed: best, bold: indistinguishable",
                       label, marks)
