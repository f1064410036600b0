"""``python -m benchmark.leaderboard``: summarise finished MLflow runs into leaderboards.

Reads MLflow only (``mlflow.search_runs``; nothing is recomputed) and writes, per dataset,
``results/<dataset>/leaderboard.md`` and ``.csv``: rows = methods, columns = missing rates plus
AVG (the mean over the rates of the grid), cells = mean ± std over seeds with the number of
seeds.  Cells with no finished run are shown as missing ("—"), never dropped.  The output only
depends on the store's content, so rebuilding from the same store gives identical files.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError

REFERENCE = "bayes_oracle"
MAIN_METRICS = ("auc", "acc")
SCENARIO_COLUMNS = {"full": "full", "image_missing": "image missing", "tabular_missing": "tabular missing"}


def load_runs(tracking_uri: str, dataset: str) -> pd.DataFrame:
    """One row per RunSpec key: the latest FINISHED attempt; failed/unfinished keys kept as status."""
    from benchmark.tracking import KEY_TAG, Tracker

    tracker = Tracker(tracking_uri, Path("."))
    exp_id = tracker.experiment_id(dataset, create=False)
    if exp_id is None:
        return pd.DataFrame()
    import mlflow
    runs = mlflow.search_runs([exp_id], filter_string=f"tags.{KEY_TAG} != ''", max_results=100000,
                              output_format="pandas")
    if runs.empty:
        return runs
    runs["finished"] = runs["status"] == "FINISHED"
    runs = runs.sort_values(["finished", "end_time"], na_position="first")
    return runs.groupby(f"tags.{KEY_TAG}", as_index=False).tail(1).reset_index(drop=True)


def _fmt(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n == 0 or not np.isfinite(mean):
        return "—"
    if n == 1 or not np.isfinite(std):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table: pattern, protocol, method, rate, metric, mean, std, n, n_failed."""
    if runs.empty:
        return pd.DataFrame(columns=["pattern", "protocol", "method", "display", "rate", "metric",
                                     "mean", "std", "n", "n_failed"])
    df = runs.copy()
    df["rate"] = df["params.rate"].astype(float)
    df["seed"] = df["params.seed"].astype(int)
    keys = ["params.pattern", "params.protocol", "tags.method", "rate"]
    rows = []
    metric_cols = [c for c in df.columns if c.startswith("metrics.")]
    for (pattern, protocol, method, rate), group in df.groupby(keys, sort=True):
        done = group[group["finished"]]
        display = group["tags.method_display"].dropna().iloc[0] if "tags.method_display" in group else method
        for col in metric_cols:
            values = done[col].dropna().to_numpy(dtype=float)
            if len(values) == 0:
                continue
            rows.append({"pattern": pattern, "protocol": protocol, "method": method, "display": display,
                         "rate": rate, "metric": col[len("metrics."):], "mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                         "n": int(len(values)), "n_failed": int((~group["finished"]).sum())})
        if done.empty:
            rows.append({"pattern": pattern, "protocol": protocol, "method": method, "display": display,
                         "rate": rate, "metric": "test_auc", "mean": float("nan"), "std": float("nan"),
                         "n": 0, "n_failed": int(len(group))})
    return pd.DataFrame(rows)


def _order_methods(methods: list[str]) -> list[str]:
    return sorted(methods, key=lambda m: (m == REFERENCE, m))


def metric_table(long: pd.DataFrame, pattern: str, protocol: str, metric: str,
                 reference_metric: str | None = None) -> pd.DataFrame:
    """Wide table (methods x rates + AVG) of formatted cells, best method per column in bold."""
    sub = long[(long.pattern == pattern) & (long.protocol == protocol)]
    rates = sorted(sub.rate.unique())
    methods = _order_methods(sorted(sub.method.unique()))
    cells: dict[str, dict[str, str]] = {}
    means: dict[str, dict[float, float]] = {}
    for method in methods:
        msub = sub[sub.method == method]
        name = msub.display.iloc[0] if len(msub) else method
        row, mrow = {}, {}
        want = reference_metric if (method == REFERENCE and reference_metric) else metric
        for rate in rates:
            hit = msub[(msub.rate == rate) & (msub.metric == want)]
            failed = msub[msub.rate == rate].n_failed.max() if len(msub[msub.rate == rate]) else 0
            if hit.empty:
                row[f"{rate:g}"] = "—" + (f" ({int(failed)} failed)" if failed else "")
                mrow[rate] = float("nan")
            else:
                h = hit.iloc[0]
                row[f"{rate:g}"] = _fmt(h["mean"], h["std"], int(h["n"])) + (f" ({int(failed)} failed)" if failed else "")
                mrow[rate] = h["mean"]
        vals = [mrow[r] for r in rates]
        row["AVG"] = f"{np.mean(vals):.3f}" if all(np.isfinite(vals)) else "—"
        mrow["AVG"] = float(np.mean(vals)) if all(np.isfinite(vals)) else float("nan")
        cells[name] = row
        means[name] = mrow
    table = pd.DataFrame.from_dict(cells, orient="index")
    method_names = [n for n, m in zip(cells, methods) if m != REFERENCE]
    for col_rate, col in [(r, f"{r:g}") for r in rates] + [("AVG", "AVG")]:
        vals = {n: means[n][col_rate] for n in method_names if np.isfinite(means[n][col_rate])}
        if vals:
            best = max(vals, key=vals.get)
            table.loc[best, col] = f"**{table.loc[best, col]}**"
    table.index.name = "method"
    return table


def build_leaderboards(tracking_uri: str, results_dir: Path, datasets: Sequence[str]) -> list[Path]:
    written = []
    for dataset in datasets:
        runs = load_runs(tracking_uri, dataset)
        if runs.empty:
            continue
        long = summarise(runs)
        out_dir = results_dir / dataset
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = out_dir / "leaderboard.csv"
        long.sort_values(["pattern", "protocol", "method", "rate", "metric"]).to_csv(
            csv_path, index=False, float_format="%.6g")
        md_path = out_dir / "leaderboard.md"
        md_path.write_text(render_markdown(dataset, runs, long))
        written += [md_path, csv_path]
    return written


def render_markdown(dataset: str, runs: pd.DataFrame, long: pd.DataFrame) -> str:
    n_finished = int(runs["finished"].sum())
    lines = [f"# Leaderboard: {dataset}", "",
             f"Built from MLflow: {n_finished} finished run(s), {len(runs) - n_finished} unfinished/failed. "
             f"Cells: mean ± std over seeds (n = seeds). AVG = mean over the rates shown. "
             f"Best method per column in bold. `—` = no finished run.", ""]
    if "params.config_hash" in runs:
        hashes = sorted(runs.loc[runs["tags.method"] != REFERENCE, "params.config_hash"].dropna().unique())
        lines += [f"Config hashes: {', '.join(hashes)}", ""]
    for (pattern, protocol), _ in long.groupby(["pattern", "protocol"], sort=True):
        for metric in MAIN_METRICS:
            table = metric_table(long, pattern, protocol, f"test_{metric}",
                                 reference_metric=f"test_{metric}")
            lines += [f"## Test {metric.upper()} — pattern `{pattern}`, protocol `{protocol}`, by missing rate", "",
                      table.to_markdown(), ""]
        pop = long[(long.pattern == pattern) & (long.protocol == protocol) &
                   (long.method == REFERENCE) & (long.metric == "population_auc")]
        if not pop.empty:
            lines += ["Bayes oracle row: the oracle's AUC on the same test set and masks. Population Bayes AUC "
                      "(closed form at rate 0, else Monte Carlo on 200k samples): " +
                      ", ".join(f"{r:g}: {m:.3f}" for r, m in zip(pop.rate, pop["mean"])), ""]
        scen = long[(long.pattern == pattern) & (long.protocol == protocol)]
        rows = {}
        for method in _order_methods(sorted(scen.method.unique())):
            msub = scen[(scen.method == method) & (scen.rate == scen.rate.min())]
            if msub.empty:
                continue
            row = {}
            for key, label in SCENARIO_COLUMNS.items():
                hit = msub[msub.metric == f"{key}_auc"]
                row[label] = _fmt(hit["mean"].iloc[0], hit["std"].iloc[0], int(hit["n"].iloc[0])) if len(hit) else "—"
            rows[msub.display.iloc[0]] = row
        if rows:
            rate0 = scen.rate.min()
            lines += [f"### Single-modality scenarios (test AUC; models trained at rate {rate0:g})", "",
                      pd.DataFrame.from_dict(rows, orient="index").rename_axis("method").to_markdown(), ""]
    return "\n".join(lines)


def render_console(tracking_uri: str, dataset: str, console) -> None:
    """rich rendering of the AUC table(s) at the end of a benchmark run."""
    from rich.table import Table

    runs = load_runs(tracking_uri, dataset)
    if runs.empty:
        return
    long = summarise(runs)
    for (pattern, protocol), _ in long.groupby(["pattern", "protocol"], sort=True):
        table = metric_table(long, pattern, protocol, "test_auc", reference_metric="test_auc")
        rich_table = Table(title=f"{dataset}: test AUC ({pattern}/{protocol})")
        rich_table.add_column("method")
        for col in table.columns:
            rich_table.add_column(str(col), justify="right")
        for name, row in table.iterrows():
            rich_table.add_row(str(name), *[str(v).replace("**", "") for v in row])
        console.print(rich_table)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard",
                                description="Build leaderboards (md, csv) from the MLflow store.")
    p.add_argument("--dataset", action="append", help="dataset(s) to summarise (default: every dataset in the store)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--tracking-uri", help="default: sqlite:///<results-dir>/mlflow.db or MLFLOW_TRACKING_URI")
    args = p.parse_args(argv)
    from benchmark.tracking import resolve_tracking_uri
    results_dir = Path(args.results_dir)
    uri = resolve_tracking_uri(args.tracking_uri, None, results_dir)
    try:
        datasets = args.dataset or _datasets_in_store(uri)
        written = build_leaderboards(uri, results_dir, datasets)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not written:
        print(f"no finished runs in {uri}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _datasets_in_store(uri: str) -> list[str]:
    from mlflow.tracking import MlflowClient
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    return sorted(n[len("medfusion-"):] for n in names if n.startswith("medfusion-"))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
