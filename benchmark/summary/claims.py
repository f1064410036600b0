"""The claims table: what each published method claims, the scenario testing its mechanism, the
measured difference against the right baseline and the verdict, all from the store.

Why here, as data: the claims are one line each from the published abstracts (paraphrased in
``/work/shared/specs/claims.md``, with the papers cited), and which suite entry tests which
claim against which baseline is a fixed part of the benchmark's design, not a result.  The
numbers are never typed in: every difference is ``contrast.difference`` on the runs of the named
suite entry (``suite_runs``), paired by seed and test-sample id, 95% interval over seeds and test
samples; **sig.** when the interval excludes 0, **n.s.** otherwise (not evidence of equality);
**no difference** only when the whole interval lies within the baseline AUC's own noise
(``contrast.within_noise``: +/- the half-width of the baseline's 95% interval).  A claim whose
method is not registered is not listed; one whose method or baseline has no runs in the store
says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from benchmark.summary.contrast import common_rates, difference, level, noise_margin, verdict, within_noise
from benchmark.summary.document import Cell, TableView
from benchmark.summary.formatting import MISSING, fixed, rate_text, signed
from benchmark.summary.model import CellStat
from benchmark.summary.suite_runs import Entry, entry_by_name


@dataclass(frozen=True)
class ClaimTest:
    """One measurement of a claim: ``method`` minus ``baseline`` on a suite entry."""

    entry: str       # suite entry name
    evaluate: str    # metric prefix of both sides: test (the entry's test mask), image_missing, tabular_missing
    rates: str       # "0" (complete training data), "max" (the entry's highest rate) or "all" (AVG)
    baseline: str    # registry name of the baseline method
    setting: str     # one line: what the comparison isolates


@dataclass(frozen=True)
class Claim:
    """A published method's claim (one line) and the tests of the mechanism behind it."""

    method: str      # registry name
    paper: str
    claim: str
    tests: tuple[ClaimTest, ...]


CLAIMS: tuple[Claim, ...] = (
    Claim("cfcml", "CFCML, arXiv 2603.20016 (code IsDling/CFCML)",
          "Relating multi-granularity image features to the tabular data, then class-aware prototypes with "
          "contrastive losses, narrows the modality gap and improves diagnosis (AUC +1.53 on MEN, +0.91 on "
          "Derm7pt, complete modalities).",
          (ClaimTest("interaction", "test", "0", "late_fusion",
                     "cross-modal interaction, complete data: late fusion is capped at the independent-evidence "
                     "ceiling, a model of the joint is not"),)),
    Claim("cmml", "CMML, arXiv 2605.25968 (no public code)",
          "Synthesising missing modality representations (cascaded residual transformer autoencoder, context "
          "tokens, memory banks) and aligning them makes diagnosis robust to arbitrary missing modalities "
          "(average AUC over missing rates +1.26 on Derm7pt, +0.97 on ODIR, +1.32 on MEN).",
          (ClaimTest("redundant_hard", "tabular_missing", "0", "early_fusion",
                     "image alone at test (hard, redundant modality), trained on complete data"),
           ClaimTest("balanced", "test", "max", "early_fusion", "balanced scenario at the highest missing rate"))),
    Claim("mdc", "Modality-dropout contrastive, arXiv 2509.18284 (MICCAI 2025; code omron-sinicx/medical-modality-dropout)",
          "Learnable modality tokens, an improved modality dropout and cross-modal contrastive learning give "
          "state-of-the-art results, especially when only one modality is available at test time.",
          (ClaimTest("dominant", "image_missing", "0", "tabular_only",
                     "imbalanced modalities: the weak modality (tabular) alone at test, vs a model trained on it alone"),
           ClaimTest("dominant", "tabular_missing", "0", "image_only",
                     "imbalanced modalities: the dominant modality (image) alone at test, vs a model trained on "
                     "it alone"))),
)


@dataclass
class ClaimResult:
    """One claim test measured (``diff`` None with a ``note`` when it could not be)."""

    claim: Claim
    test: ClaimTest
    rates: list[float]
    diff: CellStat | None
    note: str = ""
    margin: float | None = None  # the baseline AUC's noise (half-width of its 95% interval)

    def verdict_text(self) -> str:
        """"sig. better" / "sig. worse" / "n.s." / "no difference" (within the baseline's noise),
        or why it is missing."""
        if self.diff is None or self.diff.n == 0:
            return self.note or "not measured"
        v = verdict(self.diff)
        noise = within_noise(self.diff, self.margin)
        if v == "sig.":
            text = "sig. better" if self.diff.summary.mean > 0 else "sig. worse"
            return text + (f", within noise (±{fixed(self.margin)})" if noise else "")
        if noise:
            return f"no difference (within noise, ±{fixed(self.margin)})"
        return v if v != MISSING else "no interval (one seed without predictions)"


def _rates(available: list[float], which: str) -> tuple[list[float], str]:
    """(the rates a test reads, why none): "0", "max" (the highest, above 0) or "all"."""
    if not available:
        return [], "no common rate"
    if which == "0":
        return ([0.0], "") if 0.0 in available else ([], "no rate-0 runs")
    if which == "max":
        top = max(available)
        return ([top], "") if top > 0 else ([], "no rate above 0 in this entry")
    return list(available), ""


def measure(claim: Claim, test: ClaimTest, entries: list[Entry]) -> ClaimResult:
    """The claim test on the store's runs: method minus baseline on the entry, or why not."""
    entry = entry_by_name(entries, test.entry)
    if entry is None or entry.section is None:
        return ClaimResult(claim, test, [], None, f"entry '{test.entry}' not run")
    row, base = entry.method(claim.method), entry.method(test.baseline)
    if row is None or base is None:
        missing = claim.method if row is None else test.baseline
        return ClaimResult(claim, test, [], None, f"no runs of {missing} in '{test.entry}'")
    a, b = entry.side(row, test.evaluate), entry.side(base, test.evaluate)
    assert a is not None and b is not None
    rates, why = _rates(common_rates(a, b), test.rates)
    if not rates:
        return ClaimResult(claim, test, [], None, why)
    return ClaimResult(claim, test, rates, difference(a, b, rates), margin=noise_margin(level(b, rates)))


def claim_results(entries: list[Entry], registered: Sequence[str]) -> list[ClaimResult]:
    """Every test of every claim whose method is registered, in the table's order."""
    return [measure(c, t, entries) for c in CLAIMS if c.method in registered for t in c.tests]


def diff_text(c: CellStat | None) -> str:
    """Δ [95% interval] (n of m when seeds are missing)."""
    if c is None or c.n == 0:
        return MISSING
    s = c.summary
    text = signed(s.mean)
    if np.isfinite(s.ci_low) and np.isfinite(s.ci_high):
        text += f" [{signed(s.ci_low)}, {signed(s.ci_high)}]"
    if c.n < c.n_expected:
        text += f" (n={c.n} of {c.n_expected})"
    return text


def scenario_text(r: ClaimResult) -> str:
    """Where a claim was tested, in one cell: entry, evaluation, rate(s), what it isolates."""
    where = {"test": "test mask", "image_missing": "image missing", "tabular_missing": "tabular missing (image alone)"}
    rate = ", ".join(rate_text(x) for x in r.rates) if r.rates else r.test.rates
    return f"`{r.test.entry}`, {where.get(r.test.evaluate, r.test.evaluate)}, rate {rate}: {r.test.setting}"


def claims_table(results: list[ClaimResult], csv_rows: list[dict[str, Any]]) -> TableView:
    """method | paper | claim | scenario | baseline | Δ AUC [95%] | verdict (and the CSV rows)."""
    rows = []
    previous = None
    for r in results:
        cell_kind = "" if r.diff is None else ("sig" if verdict(r.diff) == "sig." else "ns")
        repeat = r.claim is previous  # a claim's second test: its paper and claim are the row above
        previous = r.claim
        rows.append([Cell(r.claim.method), Cell("(as above)" if repeat else r.claim.paper),
                     Cell("(as above)" if repeat else r.claim.claim), Cell(scenario_text(r)),
                     Cell(r.test.baseline), Cell(diff_text(r.diff), kind=cell_kind or "missing"),
                     Cell(r.verdict_text(), bold=cell_kind == "sig", kind=cell_kind or "missing")])
        s = r.diff.summary if r.diff is not None else None
        csv_rows.append({"table": "claims", "entry": r.test.entry, "evaluate": r.test.evaluate,
                         "method": r.claim.method, "baseline": r.test.baseline,
                         "rates": " ".join(rate_text(x) for x in r.rates), "claim": r.claim.claim,
                         "n": r.diff.n if r.diff is not None else 0,
                         "n_expected": r.diff.n_expected if r.diff is not None else 0,
                         "mean": s.mean if s else None, "std": s.std if s else None,
                         "ci_low": s.ci_low if s else None, "ci_high": s.ci_high if s else None,
                         "interval": ("seeds+test" if r.diff.with_test_noise else "seeds") if r.diff and r.diff.n else "",
                         "verdict": r.verdict_text()})
    return TableView(
        "Claims of the published methods, tested on the scenario that isolates their mechanism",
        ["method", "paper", "claim (paraphrased abstract)", "scenario tested", "baseline", "Δ AUC [95% interval]",
         "verdict"], rows, text_columns=5,
        note="Δ = AUC(method) − AUC(baseline) on the same test samples, per seed, then over seeds (paired by seed "
             "and sample id). 95% interval: seed-to-seed spread plus test-sample noise (paired DeLong components). "
             "**sig.** = the interval excludes 0; **n.s.** = it does not, which is not evidence that the two are "
             "equal; **no difference** = the whole interval lies within ± the half-width of the baseline AUC's own "
             "95% interval (less than this test set can resolve of one AUC). A synthetic scenario tests the "
             "mechanism behind a claim, not the paper's reported figure.")
