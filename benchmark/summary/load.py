"""Reading the leaderboards' input: the child runs of each dataset's MLflow experiment.

Every attempt of every grid cell is read (``mlflow.search_runs``), whatever its status, and
normalised into plain columns (method, setting, config hash, grid position, mask hashes), so the
rest of ``benchmark.summary`` never touches MLflow's ``tags.`` / ``params.`` names.  Nothing is
retrained or re-predicted.
"""
from __future__ import annotations

import math
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark.grid.spec import ORACLE_METHOD
from benchmark.tracking.store import KEY_TAG, LEAK_TAG, experiment_name
from core.masks import mechanism_label

FAILED_STATUSES = ("FAILED", "KILLED")


def load_all_runs(tracking_uri: str, dataset: str) -> pd.DataFrame:
    """Every child run (every attempt, any status) of the dataset's experiment, normalised."""
    exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment_name(dataset))
    if exp is None:
        return pd.DataFrame()
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.{KEY_TAG} != ''",
                              max_results=1_000_000, output_format="pandas")
    if runs.empty:
        return runs
    return normalise(runs)


def load_runs(tracking_uri: str, dataset: str) -> pd.DataFrame:
    """One row per RunSpec key: its latest FINISHED attempt, else its latest attempt (kept with
    its status, so failed cells stay visible)."""
    runs = load_all_runs(tracking_uri, dataset)
    if runs.empty:
        return runs
    return latest_per_key(runs)


def datasets_in_store(uri: str) -> list[str]:
    """The datasets with an experiment in the store (tuning experiments excluded), sorted."""
    prefix = experiment_name("")
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    return sorted(n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("-tuning"))


def sort_by_recency(runs: pd.DataFrame) -> pd.DataFrame:
    """Unfinished before finished, then by end, start and run id: the last row of a group is the
    attempt that counts (the latest finished one, else the latest one)."""
    return runs.sort_values(["finished", "end_time", "start_time", "run_id"], na_position="first", kind="mergesort")


def latest_per_key(runs: pd.DataFrame) -> pd.DataFrame:
    """The attempt that counts for each RunSpec key (``sort_by_recency``), sorted by key."""
    ordered = sort_by_recency(runs)
    return ordered.groupby("key", as_index=False, sort=True).tail(1).sort_values("key").reset_index(drop=True)


def as_text(value: Any) -> str | None:
    """A tag or param as text; None for missing values (None, NaN, NA) and empty strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    return text if text else None


def with_mechanism(protocol: str | None, mechanism: str | None, test: str | None, strength: Any,
                   mar_column: str | None) -> str | None:
    """``both`` for mcar runs (and runs from before mechanisms existed), else e.g.
    ``both, mnar(s=1.5)`` or ``both, train mnar(s=1.5) -> test mcar``."""
    train = mechanism if isinstance(mechanism, str) and mechanism else "mcar"  # NaN: a run of before
    test = test if isinstance(test, str) and test else train
    number = pd.to_numeric(pd.Series([strength]), errors="coerce").iloc[0]
    label = mechanism_label(train, test, 1.0 if pd.isna(number) else float(number), mar_column)
    return f"{protocol}, {label}" if isinstance(protocol, str) and label else protocol


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _setting(tuned: Any, trials: Any) -> str:
    """"default", or "tuned (N trials)" for runs tagged by the tuning feature."""
    if (as_text(tuned) or "").lower() != "true":
        return "default"
    n = as_text(trials)
    return f"tuned ({n} trials)" if n else "tuned (trials not recorded)"


def normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """``search_runs`` output with the plain columns the leaderboards read; a run lacking a grid
    parameter is kept (``placed`` False) so provenance can count it."""
    df = raw.copy()
    df["key"] = _column(df, f"tags.{KEY_TAG}").map(as_text)
    df["finished"] = df["status"] == "FINISHED"
    method = _column(df, "tags.method").map(as_text)
    df["method"] = method.where(method.notna(), _column(df, "params.method").map(as_text))
    display = _column(df, "tags.method_display").map(as_text)
    df["display"] = display.where(display.notna(), df["method"])
    kind = _column(df, "tags.row_kind").map(as_text)
    df["is_reference"] = (kind == "reference") | (df["method"] == ORACLE_METHOD)
    df["setting"] = [_setting(t, n) for t, n in zip(_column(df, "tags.tuned"), _column(df, "tags.tuning_trials"))]
    df["config_hash"] = _column(df, "params.config_hash").map(as_text).fillna("unknown")
    df["pattern"] = _column(df, "params.pattern").map(as_text)
    # A section per (pattern, protocol + mechanism): a non-mcar mechanism is named in the heading
    df["protocol"] = [with_mechanism(p, m, t, s, c) for p, m, t, s, c in zip(
        _column(df, "params.protocol").map(as_text), _column(df, "params.mechanism").map(as_text),
        _column(df, "params.test_mechanism").map(as_text), _column(df, "params.strength"),
        _column(df, "params.mar_column").map(as_text))]
    df["rate"] = pd.to_numeric(_column(df, "params.rate"), errors="coerce").astype(float)
    df["seed"] = pd.to_numeric(_column(df, "params.seed"), errors="coerce")
    df["machine"] = _column(df, "tags.machine").map(as_text)
    df["calibration"] = _column(df, "params.calibration").map(as_text)  # evaluation.calibration
    df["commit"] = _column(df, "tags.mlflow.source.git.commit").map(as_text)
    df["mask_test"] = _column(df, "tags.mask_sha256_test").map(as_text)
    df["mask_train"] = _column(df, "tags.mask_sha256_train").map(as_text)
    df["placed"] = (df["method"].notna() & df["pattern"].notna() & df["protocol"].notna()
                    & df["rate"].notna() & df["seed"].notna())
    df["leak"] = _column(df, f"tags.{LEAK_TAG}").map(as_text) == "true"
    code = _column(df, "tags.code_fingerprint").map(as_text)
    data = _column(df, "tags.data_fingerprint").map(as_text)
    df["fingerprint"] = [f"code {c[:8]} data {d[:8]}" if c and d else "not recorded" for c, d in zip(code, data)]
    df["row_id"] = [f"{m}|{s}|{h}" for m, s, h in zip(df["method"], df["setting"], df["config_hash"])]
    return df


def select_fingerprints(runs: pd.DataFrame, all_fingerprints: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs shown, runs superseded): a row never pools runs of different code or data.

    By default each row (method, setting, config hash) keeps the fingerprint of its newest run and
    the older ones are returned as superseded (provenance lists them).  ``all_fingerprints`` keeps
    every run and makes each fingerprint a row of its own instead."""
    if runs.empty:
        return runs, runs.iloc[0:0]
    if all_fingerprints:
        shown = runs.copy()
        shown["row_id"] = shown["row_id"] + "|" + shown["fingerprint"]
        return shown, runs.iloc[0:0]
    ends = pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.Series(pd.NaT, index=runs.index)
    starts = pd.to_datetime(runs["start_time"], utc=True) if "start_time" in runs else ends
    recency = ends.fillna(starts)
    newest = {}
    for row_id, group in runs.assign(recency=recency).groupby("row_id", sort=True):
        by_fp = group.groupby("fingerprint")["recency"].max().sort_index()
        newest[row_id] = by_fp.idxmax() if by_fp.notna().any() else by_fp.index[-1]
    keep = [newest[r] == f for r, f in zip(runs["row_id"], runs["fingerprint"])]
    mask = pd.Series(keep, index=runs.index)
    return runs[mask], runs[~mask]
