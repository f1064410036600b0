"""``python -m benchmark.leaderboard``: leaderboards built from the MLflow store alone.

Reads the child runs of each dataset's experiment (``mlflow.search_runs``) and the
``predictions.npz`` artifacts they logged; nothing is retrained or re-predicted, only statistics
are computed (``benchmark.stats``).  Per dataset it writes ``results/<dataset>/leaderboard.md``,
``.csv``, ``.html`` (one self-contained page) and ``auc_vs_rate_<pattern>_<protocol>.png/.svg``;
``results/README.md`` indexes every dataset of the store and, with two or more datasets, ranks
the methods across them (average ranks, Friedman, Nemenyi).

Trust rules the code enforces:

* The grid a table expects is the union of the methods, rates and seeds seen in any run of that
  (pattern, protocol); a cell lacking a finished run is shown as missing with the count and the
  reason (failed / running / finished without a value / never run), never dropped.
* Runs are grouped by (method, tuned or default, config hash): results of different configs are
  never averaged together.
* Output depends only on the store: rows are sorted, floats formatted, the date is the latest
  run end time in the store, plots are written with fixed metadata.  Rebuilding is byte-identical.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from benchmark import stats
from benchmark.errors import BenchmarkError
from benchmark.report import (Bullets, Cell, Curve, Document, FigureRef, Heading, Paragraph, TableView,
                              plot_critical_difference, plot_metric_vs_rate, render_html,
                              render_markdown, rich_tables)

REFERENCE = "bayes_oracle"
BASELINE = "late_fusion"
ALPHA = 0.05
LEVEL = 0.95
SHOWN_METRICS = (("test_auc", "AUC"), ("test_acc", "ACC"))
CSV_METRICS = ("test_auc", "test_acc", "test_balanced_acc", "test_f1_macro")
SCENARIOS = (("test", "test mask"), ("full", "full"), ("image_missing", "image missing"),
             ("tabular_missing", "tabular missing"))
FAILED_STATUSES = ("FAILED", "KILLED")
MISSING = "—"
CSV_COLUMNS = ["table", "pattern", "protocol", "method", "display", "setting", "config_hash", "reference",
               "rate", "metric", "n", "n_expected", "n_failed", "n_running", "n_no_value", "n_not_run",
               "n_incomplete", "mean", "std", "ci_low", "ci_high", "value", "p_paired_t", "p_wilcoxon", "delong_n",
               "delong_auc", "delong_auc_reference", "delong_diff", "delong_se", "p_delong", "verdict"]


# ============================================================================ loading

def load_all_runs(tracking_uri: str, dataset: str) -> pd.DataFrame:
    """Every child run (every attempt, any status) of the dataset's experiment, normalised."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from benchmark.tracking import KEY_TAG, experiment_name

    exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment_name(dataset))
    if exp is None:
        return pd.DataFrame()
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.{KEY_TAG} != ''",
                              max_results=1_000_000, output_format="pandas")
    if runs.empty:
        return runs
    return _normalise(runs)


def load_runs(tracking_uri: str, dataset: str) -> pd.DataFrame:
    """One row per RunSpec key: its latest FINISHED attempt, else its latest attempt (kept with
    its status, so failed cells stay visible)."""
    runs = load_all_runs(tracking_uri, dataset)
    if runs.empty:
        return runs
    return _latest_per_key(runs)


def _latest_per_key(runs: pd.DataFrame) -> pd.DataFrame:
    ordered = runs.sort_values(["finished", "end_time", "start_time", "run_id"], na_position="first", kind="mergesort")
    return ordered.groupby("key", as_index=False, sort=True).tail(1).sort_values("key").reset_index(drop=True)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    return text if text else None


def _setting(tuned: Any, trials: Any) -> str:
    """"default", or "tuned (N trials)" for runs tagged by the tuning feature."""
    if (_text(tuned) or "").lower() != "true":
        return "default"
    n = _text(trials)
    return f"tuned ({n} trials)" if n else "tuned (trials not recorded)"


def _normalise(raw: pd.DataFrame) -> pd.DataFrame:
    from benchmark.tracking import KEY_TAG

    df = raw.copy()
    df["key"] = _column(df, f"tags.{KEY_TAG}").map(_text)
    df["finished"] = df["status"] == "FINISHED"
    method = _column(df, "tags.method").map(_text)
    df["method"] = method.where(method.notna(), _column(df, "params.method").map(_text))
    display = _column(df, "tags.method_display").map(_text)
    df["display"] = display.where(display.notna(), df["method"])
    kind = _column(df, "tags.row_kind").map(_text)
    df["is_reference"] = (kind == "reference") | (df["method"] == REFERENCE)
    df["setting"] = [_setting(t, n) for t, n in zip(_column(df, "tags.tuned"), _column(df, "tags.tuning_trials"))]
    df["config_hash"] = _column(df, "params.config_hash").map(_text).fillna("unknown")
    df["pattern"] = _column(df, "params.pattern").map(_text)
    df["protocol"] = _column(df, "params.protocol").map(_text)
    df["rate"] = pd.to_numeric(_column(df, "params.rate"), errors="coerce").astype(float)
    df["seed"] = pd.to_numeric(_column(df, "params.seed"), errors="coerce")
    df["machine"] = _column(df, "tags.machine").map(_text)
    df["commit"] = _column(df, "tags.mlflow.source.git.commit").map(_text)
    df["mask_test"] = _column(df, "tags.mask_sha256_test").map(_text)
    df["mask_train"] = _column(df, "tags.mask_sha256_train").map(_text)
    df["placed"] = (df["method"].notna() & df["pattern"].notna() & df["protocol"].notna()
                    & df["rate"].notna() & df["seed"].notna())
    df["row_id"] = [f"{m}|{s}|{h}" for m, s, h in zip(df["method"], df["setting"], df["config_hash"])]
    return df


# ============================================================================ model

@dataclass(frozen=True)
class Row:
    """A leaderboard row: one method under one setting (default/tuned) and one config hash."""

    id: str
    method: str
    display: str
    setting: str
    config_hash: str
    is_reference: bool
    label: str


@dataclass
class CellStat:
    """Replicates of one (row, rate, metric) cell and why the missing seeds are missing."""

    summary: stats.Summary
    n_expected: int
    n_failed: int = 0
    n_running: int = 0
    n_no_value: int = 0
    n_not_run: int = 0
    n_incomplete: int = 0  # AVG / area: seeds lacking some rate
    values: dict[int, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.summary.n

    def reasons(self) -> str:
        parts = [f"{v} {k}" for k, v in (("failed", self.n_failed), ("running", self.n_running),
                                         ("no value", self.n_no_value), ("not run", self.n_not_run),
                                         ("seed(s) incomplete", self.n_incomplete)) if v]
        return ", ".join(parts)


@dataclass
class Section:
    """One (pattern, protocol) block of a dataset: its expected grid and the run of each cell."""

    pattern: str
    protocol: str
    rates: list[float]
    seeds: list[int]
    rows: list[Row]
    lookup: dict[tuple[str, float, int], pd.Series]

    @property
    def slug(self) -> str:
        return f"{self.pattern}_{self.protocol}"

    def method_rows(self) -> list[Row]:
        return [r for r in self.rows if not r.is_reference]

    def reference_rows(self) -> list[Row]:
        return [r for r in self.rows if r.is_reference]

    def cell(self, row: Row, rate: float, metric: str) -> CellStat:
        values: dict[int, float] = {}
        counts = dict(n_failed=0, n_running=0, n_no_value=0, n_not_run=0)
        for seed in self.seeds:
            run = self.lookup.get((row.id, rate, seed))
            if run is None:
                counts["n_not_run"] += 1
            elif run["status"] in FAILED_STATUSES:
                counts["n_failed"] += 1
            elif run["status"] != "FINISHED":
                counts["n_running"] += 1
            else:
                value = run.get(f"metrics.{metric}", math.nan)
                value = float(value) if value is not None else math.nan
                if np.isfinite(value):
                    values[seed] = value
                else:
                    counts["n_no_value"] += 1
        return CellStat(stats.t_interval(list(values.values()), LEVEL), len(self.seeds), values=values, **counts)

    def per_seed_aggregate(self, row: Row, metric: str,
                           reduce: Callable[[list[float], list[float]], float]) -> CellStat:
        """A statistic of each seed's whole rate curve (mean over rates, area), then the t interval
        over seeds; seeds lacking any rate are counted as incomplete rather than averaged over a hole."""
        cells = [self.cell(row, rate, metric) for rate in self.rates]
        values = {}
        for seed in self.seeds:
            curve = [c.values.get(seed, math.nan) for c in cells]
            if all(np.isfinite(curve)):
                v = reduce(self.rates, curve)
                if np.isfinite(v):
                    values[seed] = v
        return CellStat(stats.t_interval(list(values.values()), LEVEL), len(self.seeds),
                        n_incomplete=len(self.seeds) - len(values), values=values)


def build_sections(runs: pd.DataFrame) -> list[Section]:
    """Sections with rows ordered by average test AUC (best first), reference rows last."""
    latest = _latest_per_key(runs)
    placed = latest[latest["placed"]]
    sections = []
    for (pattern, protocol), group in placed.groupby(["pattern", "protocol"], sort=True):
        rates = sorted(float(r) for r in group["rate"].unique())
        seeds = sorted(int(s) for s in group["seed"].unique())
        # Within a (row, rate, seed) several keys can only differ by budget fields that the config
        # hash already covers; keep the latest finished one, as for keys.
        ordered = group.sort_values(["finished", "end_time", "start_time", "run_id"], na_position="first",
                                    kind="mergesort")
        lookup = {(r["row_id"], float(r["rate"]), int(r["seed"])): r for _, r in ordered.iterrows()}
        rows = _rows(group)
        section = Section(pattern, protocol, rates, seeds, rows, lookup)
        avg = {row.id: section.per_seed_aggregate(row, "test_auc", lambda r, v: float(np.mean(v))).summary.mean
               for row in rows}
        section.rows = sorted(rows, key=lambda row: (row.is_reference, -avg[row.id] if np.isfinite(avg[row.id])
                                                     else math.inf, row.display, row.setting, row.config_hash))
        sections.append(section)
    return sections


def _rows(group: pd.DataFrame) -> list[Row]:
    rows = []
    hashes_per_method = group.groupby(["method", "setting"])["config_hash"].nunique()
    for row_id, g in group.groupby("row_id", sort=True):
        first = g.sort_values("key").iloc[0]
        display = str(first["display"])
        label = display
        if hashes_per_method[(first["method"], first["setting"])] > 1:
            label = f"{display} [cfg {first['config_hash'][:8]}]"
        rows.append(Row(row_id, str(first["method"]), display, str(first["setting"]), str(first["config_hash"]),
                        bool(first["is_reference"]), label))
    return rows


# ============================================================================ predictions

class PredictionStore:
    """Reads ``predictions.npz`` artifacts once per build (cached); a run without one gives None.

    A local artifact store (the default ``file:`` location next to the SQLite file) is read in
    place; any other store goes through ``mlflow.artifacts.download_artifacts``.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="leaderboard-")
        self._cache: dict[str, dict[str, np.ndarray] | None] = {}

    def get(self, run: pd.Series) -> dict[str, np.ndarray] | None:
        run_id = str(run["run_id"])
        if run_id not in self._cache:
            self._cache[run_id] = self._read(run_id, _text(run.get("artifact_uri")))
        return self._cache[run_id]

    def _read(self, run_id: str, artifact_uri: str | None) -> dict[str, np.ndarray] | None:
        from urllib.parse import unquote, urlparse

        from mlflow.exceptions import MlflowException

        try:
            parsed = urlparse(artifact_uri) if artifact_uri else None
            if parsed is not None and parsed.scheme in ("file", "") and artifact_uri:
                path = Path(unquote(parsed.path)) / "predictions.npz"
            else:
                import mlflow

                dst = Path(self._tmp.name) / run_id
                dst.mkdir(exist_ok=True)
                source = f"{artifact_uri}/predictions.npz" if artifact_uri else None
                path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst)) if source
                            else mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions.npz",
                                                                     dst_path=str(dst)))
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (MlflowException, OSError, ValueError):
            return None

    def close(self) -> None:
        self._tmp.cleanup()


def _binary_scores(pred: dict[str, np.ndarray], key: str = "probs_mask") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(ids, labels, P(class 1)) of a binary task's predictions; None for other tasks."""
    if key not in pred or "ids" not in pred or "labels" not in pred:
        return None
    labels, probs = np.asarray(pred["labels"]), np.asarray(pred[key])
    if labels.ndim != 1 or probs.ndim != 2 or probs.shape[1] != 2:
        return None
    return np.asarray(pred["ids"]).astype(str), labels.astype(int), probs[:, 1].astype(np.float64)


# ============================================================================ statistics per section

@dataclass
class Comparison:
    row: Row
    reference: Row
    rate: float
    paired: stats.PairedResult | None
    delong: stats.DelongResult | None
    n_mask_mismatch: int = 0
    n_no_predictions: int = 0
    delong_note: str = ""

    @property
    def significant(self) -> bool:
        """Significant only when the seed-paired t-test and (for binary tasks) DeLong both say so."""
        if self.paired is None or not np.isfinite(self.paired.p_ttest) or self.paired.p_ttest >= ALPHA:
            return False
        if self.delong is not None:
            return bool(np.isfinite(self.delong.p) and self.delong.p < ALPHA)
        return True


def compare(section: Section, row: Row, reference: Row, rate: float, predictions: PredictionStore | None) -> Comparison:
    """Row minus reference at one rate: seeds paired on identical masks, then DeLong on the pooled
    test predictions paired by (seed, sample id)."""
    a_vals, r_vals, seeds, mismatch = [], [], [], 0
    for seed in section.seeds:
        ra, rr = section.lookup.get((row.id, rate, seed)), section.lookup.get((reference.id, rate, seed))
        if ra is None or rr is None or ra["status"] != "FINISHED" or rr["status"] != "FINISHED":
            continue
        va, vr = ra.get("metrics.test_auc", math.nan), rr.get("metrics.test_auc", math.nan)
        if not (np.isfinite(va) and np.isfinite(vr)):
            continue
        if any(ra[c] and rr[c] and ra[c] != rr[c] for c in ("mask_test", "mask_train")):
            mismatch += 1  # not the same masks: not a paired replicate
            continue
        a_vals.append(float(va))
        r_vals.append(float(vr))
        seeds.append(seed)
    paired = stats.paired_tests(a_vals, r_vals, LEVEL) if seeds else None
    comp = Comparison(row, reference, rate, paired, None, n_mask_mismatch=mismatch)
    if not seeds or predictions is None:
        return comp
    strata = []
    for seed in seeds:
        ra, rr = section.lookup[(row.id, rate, seed)], section.lookup[(reference.id, rate, seed)]
        pa, pr = predictions.get(ra), predictions.get(rr)
        if pa is None or pr is None:
            comp.n_no_predictions += 1
            continue
        ba, br = _binary_scores(pa), _binary_scores(pr)
        if ba is None or br is None:
            comp.delong_note = "DeLong n/a (not a binary task)"
            return comp
        ids_a, lab_a, s_a = ba
        ids_r, lab_r, s_r = br
        common, ia, ir = np.intersect1d(ids_a, ids_r, assume_unique=False, return_indices=True)
        if len(common) == 0:
            continue
        if not np.array_equal(lab_a[ia], lab_r[ir]):
            raise BenchmarkError(f"predictions.npz of runs {ra['run_id']} and {rr['run_id']} (seed {seed}, "
                                 f"rate {rate:g}) disagree on the labels of the same sample ids")
        strata.append((common, lab_a[ia], s_a[ia], s_r[ir]))
    if comp.n_no_predictions:
        comp.delong_note = "DeLong n/a (no predictions.npz)"
    if strata and not comp.n_no_predictions:
        try:
            comp.delong = stats.delong_stratified(strata)
        except ValueError as exc:
            raise BenchmarkError(f"rate {rate:g}, {row.method} vs {reference.method}: {exc}") from None
    return comp


# ============================================================================ formatting

def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else MISSING


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}" if np.isfinite(x) else MISSING


def _p(p: float) -> str:
    """"p=0.034" / "p<0.001" / "p n/a"."""
    if not np.isfinite(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _count_text(c: CellStat) -> str:
    if c.n == c.n_expected and not c.reasons():
        return f"(n={c.n})"
    why = c.reasons()
    return f"(n={c.n} of {c.n_expected}" + (f"; {why})" if why else ")")


def format_cell(c: CellStat, with_ci: bool = True) -> Cell:
    s = c.summary
    incomplete = c.n < c.n_expected
    if c.n == 0:
        return Cell(f"{MISSING} {_count_text(c)}", kind="missing")
    body = _f(s.mean)
    if c.n >= 2:
        body += f" ± {_f(s.std)}"
        if with_ci:
            body += f" [{_f(s.ci_low)}, {_f(s.ci_high)}]"
    return Cell(f"{body} {_count_text(c)}", kind="missing" if incomplete else "")


def _rate(r: float) -> str:
    return f"{r:g}"


def _row_cells(row: Row) -> list[Cell]:
    return [Cell(row.label), Cell(MISSING if row.is_reference else row.setting)]


# ============================================================================ tables

@dataclass
class DatasetReport:
    dataset: str
    document: Document
    csv_rows: list[dict[str, Any]]
    figures: list[tuple[str, list[Curve], str, str, str]]  # stem, curves, title, xlabel, ylabel
    runs: pd.DataFrame
    sections: list[Section]


def _csv_base(table: str, section: Section, row: Row) -> dict[str, Any]:
    return {"table": table, "pattern": section.pattern, "protocol": section.protocol, "method": row.method,
            "display": row.label, "setting": row.setting, "config_hash": row.config_hash}


def _csv_stat(c: CellStat) -> dict[str, Any]:
    s = c.summary
    return {"n": c.n, "n_expected": c.n_expected, "n_failed": c.n_failed, "n_running": c.n_running,
            "n_no_value": c.n_no_value, "n_not_run": c.n_not_run, "n_incomplete": c.n_incomplete,
            "mean": s.mean, "std": s.std,
            "ci_low": s.ci_low, "ci_high": s.ci_high}


def summary_tables(section: Section, csv_rows: list[dict[str, Any]]) -> list[TableView]:
    """Per metric: rows x (rates + AVG), mean ± std [95% t interval] (n); best method bolded."""
    tables = []
    avg_fn = lambda r, v: float(np.mean(v))  # noqa: E731
    for metric in CSV_METRICS:
        shown = dict(SHOWN_METRICS).get(metric)
        cells: dict[str, list[CellStat]] = {}
        for row in section.rows:
            per_rate = [section.cell(row, rate, metric) for rate in section.rates]
            avg = section.per_seed_aggregate(row, metric, avg_fn)
            cells[row.id] = per_rate + [avg]
            for rate, c in zip([_rate(r) for r in section.rates] + ["AVG"], per_rate + [avg]):
                csv_rows.append({**_csv_base("summary", section, row), "rate": rate, "metric": metric, **_csv_stat(c)})
        if shown is None:
            continue
        best = []
        for j in range(len(section.rates) + 1):
            means = [cells[r.id][j].summary.mean for r in section.method_rows()]
            finite = [m for m in means if np.isfinite(m)]
            best.append(max(finite) if finite else math.nan)
        rows = []
        for row in section.rows:
            out = _row_cells(row)
            for j, c in enumerate(cells[row.id]):
                cell = format_cell(c)
                if not row.is_reference and np.isfinite(best[j]) and c.summary.mean == best[j]:
                    cell = Cell(cell.text, bold=True, kind=cell.kind)
                out.append(cell)
            rows.append(out)
        tables.append(TableView(
            f"Test {shown} by missing rate (pattern `{section.pattern}`, protocol `{section.protocol}`)",
            ["method", "training"] + [f"rate {_rate(r)}" for r in section.rates] + ["AVG"], rows,
            note=f"mean ± std over seeds [95% t interval over seeds] (n = seeds). AVG = each seed's mean over "
                 f"the {len(section.rates)} rates, then summarised over seeds (only seeds with every rate). "
                 f"Best method per column in bold. {MISSING} / 'n=k of m' = missing runs, with the reason."))
    return tables


def robustness(section: Section, csv_rows: list[dict[str, Any]], figures: list, dataset: str) -> list:
    """Normalised area under the AUC-vs-rate curve per seed, relative drop from rate 0, plot."""
    blocks: list = []
    curves = []
    has_zero = 0.0 in section.rates
    span = f"{_rate(section.rates[0])}–{_rate(section.rates[-1])}"
    rows = []
    for row in section.rows:
        cells = [section.cell(row, rate, "test_auc") for rate in section.rates]
        curves.append(Curve(row.label if row.setting == "default" else f"{row.label} ({row.setting})",
                            section.rates, [c.summary.mean for c in cells],
                            [c.summary.ci_low for c in cells], [c.summary.ci_high for c in cells],
                            reference=row.is_reference))
        area = section.per_seed_aggregate(row, "test_auc", stats.normalised_area)
        csv_rows.append({**_csv_base("robustness", section, row), "rate": f"{span}", "metric": "test_auc_area",
                         **_csv_stat(area)})
        out = _row_cells(row) + [format_cell(area, with_ci=True) if len(section.rates) > 1
                                 else Cell(f"{MISSING} (one rate)", kind="missing")]
        if has_zero:
            zero = cells[section.rates.index(0.0)]
            for rate, c in zip(section.rates, cells):
                if rate == 0.0:
                    continue
                # Same seeds on both sides, so a failed seed cannot masquerade as robustness.
                common = sorted(set(zero.values) & set(c.values))
                drop = stats.relative_drop(float(np.mean([zero.values[s] for s in common])),
                                           float(np.mean([c.values[s] for s in common]))) if common else math.nan
                csv_rows.append({**_csv_base("robustness", section, row), "rate": _rate(rate),
                                 "metric": "test_auc_relative_drop", "n": len(common),
                                 "n_expected": len(section.seeds), "value": drop})
                partial = len(common) < len(section.seeds)
                text = f"{drop * 100:+.1f}%" if np.isfinite(drop) else MISSING
                if partial:
                    text += f" (n={len(common)} of {len(section.seeds)})"
                out.append(Cell(text, kind="missing" if partial else ""))
        rows.append(out)
    columns = ["method", "training", f"AUC area (rates {span}, normalised)"]
    if has_zero:
        columns += [f"drop at {_rate(r)}" for r in section.rates if r != 0.0]
    blocks.append(TableView(
        f"Robustness: area under the AUC-vs-rate curve and relative AUC drop from rate 0", columns, rows,
        note="Area: trapezoid over the rates divided by the rate span (an average AUC over the curve), per seed, "
             "then mean ± std [95% t interval] over seeds with every rate. Drop: (AUC(0) − AUC(r)) / AUC(0) of "
             "the means over the seeds that have both rates; positive = worse than complete data." +
             ("" if has_zero else " No rate-0 runs: drops are not defined.")))
    stem = f"auc_vs_rate_{section.slug}"
    figures.append((stem, curves, f"{dataset}: test AUC vs missing rate ({section.pattern}, {section.protocol})",
                    f"missing rate (pattern {section.pattern}, protocol {section.protocol})",
                    "test AUC (mean over seeds, 95% t interval)"))
    blocks.append(FigureRef(stem, f"{figures[-1][2]}. Solid: methods (error bars: 95% t interval over seeds); "
                                  f"dashed black: Bayes oracle, shaded: its 95% t interval.", svg=""))  # svg filled in when drawn
    return blocks


def comparison_tables(section: Section, csv_rows: list[dict[str, Any]], predictions: PredictionStore | None) -> list:
    """Each method vs the best method at each rate and vs late fusion."""
    methods = section.method_rows()
    blocks: list = []
    if len(methods) < 2:
        return [Paragraph("Paired comparisons need two methods; this section has "
                          f"{len(methods)}.")]
    best_per_rate: dict[float, Row | None] = {}
    for rate in section.rates:
        scored = [(section.cell(r, rate, "test_auc").summary.mean, r) for r in methods]
        scored = [(m, r) for m, r in scored if np.isfinite(m)]
        best_per_rate[rate] = max(scored, key=lambda t: t[0])[1] if scored else None
    baselines = [r for r in methods if r.method == BASELINE and r.setting == "default"] or \
                [r for r in methods if r.method == BASELINE]
    targets: list[tuple[str, Callable[[float], Row | None]]] = [("best", lambda rate: best_per_rate[rate])]
    if baselines:
        targets.append((BASELINE, lambda rate, b=baselines[0]: b))
    for name, ref_for in targets:
        rows = []
        for row in methods:
            out = _row_cells(row)
            for rate in section.rates:
                ref = ref_for(rate)
                if ref is None:
                    out.append(Cell(f"{MISSING} (no reference)", kind="missing"))
                    continue
                if ref.id == row.id:
                    out.append(Cell("reference", kind="ref"))
                    continue
                comp = compare(section, row, ref, rate, predictions)
                out.append(_comparison_cell(comp))
                csv_rows.append(_comparison_csv(section, comp, name))
            rows.append(out)
        if name == "best":
            refs = "; ".join(f"{_rate(r)}: {best_per_rate[r].label if best_per_rate[r] else MISSING}"
                             for r in section.rates)
            title = "Paired comparison of test AUC vs the best method at each rate"
            ref_note = f"Reference (highest mean AUC) per rate: {refs}. "
        else:
            title = f"Paired comparison of test AUC vs {baselines[0].label}"
            ref_note = ""
        blocks.append(TableView(
            title, ["method", "training"] + [f"rate {_rate(r)}" for r in section.rates], rows,
            note=ref_note + "Δ = method − reference, mean over seeds with identical masks [95% t interval]. "
                 f"t: paired t-test over seeds; DeLong: on the test predictions of those seeds, paired by "
                 f"(seed, sample id), seeds as strata, a sample shared by several seeds counted once (clustered). "
                 f"**sig.** only when both p < {ALPHA:g}; otherwise **n.s.** — "
                 "a difference marked n.s. is not evidence that either method is better. No multiple-comparison "
                 "correction."))
    if not baselines:
        blocks.append(Paragraph(f"No `{BASELINE}` runs in this section: the comparison vs late fusion is skipped."))
    return blocks


def _comparison_cell(comp: Comparison) -> Cell:
    if comp.paired is None or comp.paired.n == 0:
        extra = f"; {comp.n_mask_mismatch} seed(s) with different masks" if comp.n_mask_mismatch else ""
        return Cell(f"{MISSING} (no paired seeds{extra})", kind="missing")
    d = comp.paired.diff
    ci = f" [{_signed(d.ci_low)}, {_signed(d.ci_high)}]" if comp.paired.n >= 2 else ""
    dl = f"DeLong {_p(comp.delong.p)}" if comp.delong is not None else (comp.delong_note or "DeLong n/a")
    verdict = "sig." if comp.significant else "n.s."
    extra = []
    if comp.n_mask_mismatch:
        extra.append(f"{comp.n_mask_mismatch} seed(s) excluded: masks differ")
    if comp.n_no_predictions:
        extra.append(f"{comp.n_no_predictions} seed(s) without predictions")
    tail = ("; " + "; ".join(extra)) if extra else ""
    return Cell(f"{_signed(d.mean)}{ci} {verdict} (t {_p(comp.paired.p_ttest)}; {dl}; n={comp.paired.n}{tail})",
                bold=comp.significant, kind="sig" if comp.significant else "ns")


def _comparison_csv(section: Section, comp: Comparison, name: str) -> dict[str, Any]:
    out = {**_csv_base(f"paired_vs_{name}", section, comp.row), "reference": comp.reference.method,
           "rate": _rate(comp.rate), "metric": "test_auc", "verdict": "sig" if comp.significant else "ns"}
    if comp.paired is not None:
        d = comp.paired.diff
        out.update({"n": comp.paired.n, "n_expected": len(section.seeds), "mean": d.mean, "std": d.std,
                    "ci_low": d.ci_low, "ci_high": d.ci_high, "p_paired_t": comp.paired.p_ttest,
                    "p_wilcoxon": comp.paired.p_wilcoxon})
    if comp.delong is not None:
        dl = comp.delong
        out.update({"delong_n": dl.n, "delong_auc": dl.auc_a, "delong_auc_reference": dl.auc_b,
                    "delong_diff": dl.diff, "delong_se": dl.se, "p_delong": dl.p})
    return out


def scenario_table(section: Section, csv_rows: list[dict[str, Any]]) -> TableView:
    """Each model (trained at a rate) tested with the configured mask, with everything available,
    with every image removed and with every tabular record removed."""
    rows = []
    for row in section.rows:
        for rate in section.rates:
            out = _row_cells(row) + [Cell(_rate(rate))]
            for prefix, _ in SCENARIOS:
                c = section.cell(row, rate, f"{prefix}_auc")
                out.append(format_cell(c, with_ci=False))
                if prefix != "test":
                    csv_rows.append({**_csv_base("scenario", section, row), "rate": _rate(rate),
                                     "metric": f"{prefix}_auc", **_csv_stat(c)})
            rows.append(out)
    return TableView(
        "Single-modality scenarios: test AUC of the models trained at each rate",
        ["method", "training", "trained at rate"] + [label for _, label in SCENARIOS], rows,
        note="test mask = the configured test mask (as in the tables above); full = every available modality "
             "given; image missing / tabular missing = that modality removed for every test sample. "
             "mean ± std over seeds (n); 95% intervals are in the CSV.", text_columns=3)


# ============================================================================ document

def _git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    head = out.stdout.strip()
    return head if out.returncode == 0 and head else "unknown"


def _latest_end(runs: pd.DataFrame) -> str:
    ends = pd.to_datetime(runs["end_time"], utc=True).dropna() if "end_time" in runs else pd.Series(dtype=object)
    if ends.empty:
        return "no run has ended"
    return ends.max().strftime("%Y-%m-%d %H:%M:%S UTC")


def _joined(values: pd.Series, missing: str = "not recorded") -> str:
    vals = sorted({str(v) for v in values.dropna() if str(v)})
    return "; ".join(vals) if vals else missing


def provenance(runs: pd.DataFrame) -> list[str]:
    """Commit, config hashes, date (latest run end), machine, run counts: from the store only."""
    latest = _latest_per_key(runs)
    finished = int(latest["finished"].sum())
    failed = int(latest["status"].isin(FAILED_STATUSES).sum())
    other = len(latest) - finished - failed
    superseded = len(runs) - len(latest)
    commits = _joined(runs["commit"].map(lambda c: c[:12] if c else c))
    hashes = "; ".join(f"`{h}` ({', '.join(sorted(g.unique()))})" for h, g in
                       latest.groupby("config_hash", sort=True)["method"]) or "none"
    unplaced = int((~latest["placed"]).sum())
    lines = [
        f"**Runs:** {len(latest)} grid cells in the MLflow store ({finished} finished, {failed} failed/killed, "
        f"{other} running/unfinished); {superseded} earlier attempt(s) superseded."
        + (f" {unplaced} run(s) lack grid parameters and cannot be placed in a table." if unplaced else ""),
        f"**Date:** {_latest_end(runs)} (latest run end time in the store).",
        f"**Commit:** runs recorded at {commits}; leaderboard built by {_git_head()[:12]}.",
        f"**Machine:** {_joined(runs['machine'])}.",
        f"**Config hashes:** {hashes}.",
    ]
    return lines


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
        f"Built from MLflow alone; only statistics on the logged metrics and test predictions are computed. "
        f"Intervals: 95% Student t over seeds. Paired tests: t-test over seeds + DeLong on pooled predictions. "
        f"See README, section 'Leaderboards', for the definitions."))
    csv_rows: list[dict[str, Any]] = []
    figures: list = []
    predictions = PredictionStore() if with_predictions else None
    try:
        for section in sections:
            pre = f"pattern `{section.pattern}`, protocol `{section.protocol}`"
            doc.blocks.append(Heading(f"Missing modality: {pre}", 2))
            doc.blocks.append(Paragraph(
                f"Grid: rates {', '.join(_rate(r) for r in section.rates)}; seeds "
                f"{', '.join(str(s) for s in section.seeds)}; {len(section.method_rows())} method row(s)."))
            doc.blocks += summary_tables(section, csv_rows)
            pop = _population_line(section)
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


def _population_line(section: Section) -> str:
    refs = section.reference_rows()
    if not refs:
        return ""
    parts = []
    for rate in section.rates:
        c = section.cell(refs[0], rate, "population_auc")
        parts.append(f"{_rate(rate)}: {_f(c.summary.mean)}")
    return ("Bayes oracle row: the oracle's AUC on the very same test sets and masks (an upper bound, not a "
            "method). Population Bayes AUC by rate: " + ", ".join(parts) + ".")


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    df.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")


def write_report(report: DatasetReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    svgs = {}
    written = []
    for stem, curves, title, xlabel, ylabel in report.figures:
        svgs[stem] = plot_metric_vs_rate(curves, out_dir / stem, title, xlabel, ylabel)
        written += [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    report.document.blocks = [FigureRef(b.stem, b.caption, svgs[b.stem]) if isinstance(b, FigureRef) else b
                              for b in report.document.blocks]
    md = out_dir / "leaderboard.md"
    md.write_text(render_markdown(report.document))
    csv = out_dir / "leaderboard.csv"
    _write_csv(report.csv_rows, csv)
    page = out_dir / "leaderboard.html"
    page.write_text(render_html(report.document))
    return [md, csv, page] + written


# ============================================================================ index and ranking

def ranking_blocks(dataset_sections: dict[str, list[Section]], results_dir: Path) -> tuple[list, list[Path]]:
    """Average ranks across (dataset, pattern, protocol) blocks by AVG test AUC, Friedman, Nemenyi."""
    datasets = [d for d, secs in dataset_sections.items() if secs]
    blocks: list = [Heading("Ranking across datasets", 2)]
    if len(datasets) < 2:
        blocks.append(Paragraph(f"A ranking across datasets needs results on at least two datasets; the store has "
                                f"{len(datasets)}."))
        return blocks, []
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for dataset in datasets:
        for section in dataset_sections[dataset]:
            block = f"{dataset} ({section.pattern}/{section.protocol})"
            for row in section.method_rows():
                name = row.display if row.setting == "default" else f"{row.display} ({row.setting})"
                avg = section.per_seed_aggregate(row, "test_auc", lambda r, v: float(np.mean(v))).summary.mean
                if np.isfinite(avg):
                    scores.setdefault(block, {}).setdefault(name, avg)  # rows are best-first
    block_names = sorted(scores)
    methods = sorted(set.intersection(*[set(v) for v in scores.values()])) if scores else []
    excluded = sorted(set().union(*[set(v) for v in scores.values()]) - set(methods)) if scores else []
    if len(methods) < 2 or len(block_names) < 2:
        blocks.append(Paragraph(f"Fewer than two methods have a complete AVG AUC in every block "
                                f"({len(block_names)} block(s)); no ranking."))
        return blocks, []
    matrix = np.array([[scores[b][m] for m in methods] for b in block_names])
    res = stats.rank_methods(matrix, methods, ALPHA)
    order = np.argsort(res.average_ranks, kind="stable")
    rows = [[Cell(methods[j]), Cell(f"{res.average_ranks[j]:.2f}")] +
            [Cell(_f(matrix[i, j])) for i in range(len(block_names))] for j in order]
    fried = (f"Friedman χ² = {res.friedman_statistic:.2f}, {_p(res.friedman_p)}"
             if np.isfinite(res.friedman_p) else "Friedman test n/a (needs ≥ 3 methods)")
    blocks.append(TableView("Average rank by AVG test AUC (1 = best)", ["method", "avg rank"] + block_names, rows,
                            note=f"Blocks: {len(block_names)} (dataset, pattern/protocol) pairs; score = AVG test "
                                 f"AUC over the rates. {fried}. Nemenyi critical difference (α = {ALPHA:g}): "
                                 f"{_f(res.critical_difference, 2)} — methods whose average ranks differ by less are "
                                 f"not distinguishable. With few blocks the test has little power."
                                 + (f" Not ranked (missing in some block): {', '.join(excluded)}." if excluded else ""),
                            text_columns=1))
    stem = results_dir / "critical_difference"
    svg = plot_critical_difference(methods, res.average_ranks, res.critical_difference, stem,
                                   f"{len(block_names)} blocks; {fried}")
    blocks.append(FigureRef("critical_difference", "Critical-difference diagram: methods joined by a red bar are "
                                                   "not significantly different (Nemenyi).", svg))
    return blocks, [stem.with_suffix(".png"), stem.with_suffix(".svg")]


def write_index(tracking_uri: str, results_dir: Path, cache: dict[str, DatasetReport] | None = None) -> list[Path]:
    """results/README.md: one line per dataset of the store, then the cross-dataset ranking."""
    cache = cache or {}
    datasets = datasets_in_store(tracking_uri)
    rows = []
    dataset_sections: dict[str, list[Section]] = {}
    all_runs = []
    for dataset in datasets:
        runs = cache[dataset].runs if dataset in cache else load_all_runs(tracking_uri, dataset)
        if runs.empty:
            continue
        all_runs.append(runs)
        sections = cache[dataset].sections if dataset in cache else build_sections(runs)
        dataset_sections[dataset] = sections
        latest = _latest_per_key(runs)
        best = []
        for s in sections:
            for row in s.method_rows():
                avg = s.per_seed_aggregate(row, "test_auc", lambda r, v: float(np.mean(v))).summary.mean
                if np.isfinite(avg):
                    setting = "" if row.setting == "default" else f", {row.setting}"
                    best.append(f"{row.label} {avg:.3f} ({s.pattern}/{s.protocol}{setting})")
                    break
        have = (results_dir / dataset / "leaderboard.md").exists()
        link = (f"[md]({dataset}/leaderboard.md) · [html]({dataset}/leaderboard.html) · "
                f"[csv]({dataset}/leaderboard.csv)") if have else "not built (run `make leaderboard`)"
        rows.append([Cell(dataset), Cell(link), Cell(str(len(latest))), Cell(str(int(latest["finished"].sum()))),
                     Cell(str(int(latest["status"].isin(FAILED_STATUSES).sum()))),
                     Cell("; ".join(best) or MISSING), Cell(_latest_end(runs))])
    if not rows:
        return []
    runs = pd.concat(all_runs, ignore_index=True)
    doc = Document("medfusion-bench results")
    doc.blocks.append(Paragraph(
        f"Built from the MLflow store alone. Date: {_latest_end(runs)} (latest run end). Commit: runs recorded at "
        f"{_joined(runs['commit'].map(lambda c: c[:12] if c else c))}; index built by {_git_head()[:12]}. "
        f"Machine: {_joined(runs['machine'])}."))
    doc.blocks.append(TableView("Datasets", ["dataset", "leaderboard", "grid cells", "finished", "failed",
                                             "best by AVG test AUC", "latest run end"], rows, text_columns=2))
    blocks, written = ranking_blocks(dataset_sections, results_dir)
    doc.blocks += blocks
    path = results_dir / "README.md"
    path.write_text(render_markdown(doc))
    return [path] + written


# ============================================================================ public entry points

def build_leaderboards(tracking_uri: str, results_dir: Path, datasets: Sequence[str]) -> list[Path]:
    """Write every file for ``datasets`` and refresh ``results_dir/README.md``; returns what was written."""
    results_dir = Path(results_dir)
    written: list[Path] = []
    built: dict[str, DatasetReport] = {}
    for dataset in datasets:
        report = build_report(tracking_uri, dataset)
        if report is None:
            continue
        built[dataset] = report
        written += write_report(report, results_dir / dataset)
    if built:
        written += write_index(tracking_uri, results_dir, built)
    return written


def render_console(tracking_uri: str, dataset: str, console) -> None:
    """The same tables as the files, printed with rich (end of a benchmark run)."""
    report = build_report(tracking_uri, dataset)
    if report is None:
        console.print(f"{dataset}: no runs in the store")
        return
    console.rule(f"[bold]{dataset}[/]")
    for line in provenance(report.runs):
        console.print(line.replace("**", ""), markup=False)
    rich_tables(report.document, console)


def datasets_in_store(uri: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    from benchmark.tracking import experiment_name
    prefix = experiment_name("")
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    return sorted(n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("-tuning"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard",
                                description="Build leaderboards (md, csv, html, plots) from the MLflow store.")
    p.add_argument("--dataset", action="append", help="dataset(s) to summarise (default: every dataset in the store)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--tracking-uri", help="default: sqlite:///<results-dir>/mlflow.db or MLFLOW_TRACKING_URI")
    args = p.parse_args(argv)
    from benchmark.tracking import resolve_tracking_uri
    results_dir = Path(args.results_dir)
    uri = resolve_tracking_uri(args.tracking_uri, None, results_dir)
    try:
        datasets = args.dataset or datasets_in_store(uri)
        written = build_leaderboards(uri, results_dir, datasets)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not written:
        print(f"no runs in {uri}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
