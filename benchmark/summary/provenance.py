"""Where the numbers come from: commits, config hashes, date, machine and run counts.

Everything but the commit that built the leaderboard (``git_head``) is read from the store, and
the date is the latest run end time rather than the build time, so rebuilding from the same
store gives the same bytes.
"""
from __future__ import annotations


import pandas as pd

from benchmark.grid.fingerprint import git_commit
from benchmark.summary.calibration import calibration_line
from benchmark.summary.load import FAILED_STATUSES, latest_per_key


def git_head() -> str:
    """The commit of this checkout, which builds the leaderboard."""
    return git_commit()


def latest_end(runs: pd.DataFrame) -> str:
    """The latest run end time in ``runs``, as the leaderboards' date."""
    ends = pd.to_datetime(runs["end_time"], utc=True).dropna() if "end_time" in runs else pd.Series(dtype=object)
    if ends.empty:
        return "no run has ended"
    return ends.max().strftime("%Y-%m-%d %H:%M:%S UTC")


def joined(values: pd.Series, missing: str = "not recorded") -> str:
    """The distinct non-empty values, sorted and joined by "; "; ``missing`` when there are none."""
    vals = sorted({str(v) for v in values.dropna() if str(v)})
    return "; ".join(vals) if vals else missing


def commit_line(runs: pd.DataFrame, built: str) -> str:
    """"runs recorded at <commits>; <built> built by <HEAD>" (short hashes)."""
    commits = joined(runs["commit"].map(lambda c: c[:12] if c else c))
    return f"runs recorded at {commits}; {built} built by {git_head()[:12]}"


def provenance(runs: pd.DataFrame, older: pd.DataFrame | None = None) -> list[str]:
    """Commit, config hashes, code/data fingerprints, date (latest run end), machine, run counts,
    and the runs left out because newer code or data superseded them: from the store only."""
    latest = latest_per_key(runs)
    finished = int(latest["finished"].sum())
    failed = int(latest["status"].isin(FAILED_STATUSES).sum())
    other = len(latest) - finished - failed
    superseded = len(runs) - len(latest)
    hashes = "; ".join(f"`{h}` ({', '.join(sorted(g.unique()))})" for h, g in
                       latest.groupby("config_hash", sort=True)["method"]) or "none"
    unplaced = int((~latest["placed"]).sum())
    lines = [
        f"**Runs:** {len(latest)} grid cells in the MLflow store ({finished} finished, {failed} failed/killed, "
        f"{other} running/unfinished); {superseded} earlier attempt(s) superseded."
        + (f" {unplaced} run(s) lack grid parameters and cannot be placed in a table." if unplaced else ""),
        f"**Date:** {latest_end(runs)} (latest run end time in the store).",
        f"**Commit:** {commit_line(runs, 'leaderboard')}.",
        f"**Machine:** {joined(runs['machine'])}.",
        f"**Config hashes:** {hashes}.",
        calibration_line(latest),
        f"**Code and data fingerprints** (one per row): {fingerprint_text(latest)}.",
        leak_text(latest),
    ]
    if older is not None and not older.empty:
        old = latest_per_key(older)
        per_method = "; ".join(f"{m}: {len(g)} run(s) of {', '.join(sorted(g['fingerprint'].unique()))}"
                               for m, g in old.groupby("method", sort=True))
        lines.append(f"**Superseded (not pooled):** {len(old)} run(s) of older code or data are left out "
                     f"({per_method}); `python -m benchmark.leaderboard --all-fingerprints` shows them as rows.")
    return lines


def leak_text(runs: pd.DataFrame) -> str:
    """The leak guard's verdict on the shown runs (a run above the Bayes oracle + 3 SE is flagged)."""
    flagged = runs[runs["finished"] & runs["leak"]] if "leak" in runs else runs.iloc[0:0]
    has_oracle = "metrics.bayes_test_auc" in runs and runs["metrics.bayes_test_auc"].notna().any()
    if flagged.empty and not has_oracle:
        return "**Leak guard:** not applicable (the dataset has no Bayes oracle)."
    if flagged.empty:
        return ("**Leak guard:** no finished run's test AUC exceeds the Bayes oracle's on its own test set "
                "by more than 3 DeLong SE (checked on every run of a dataset with an oracle).")
    names = ", ".join(sorted(f"{m} ({len(g)})" for m, g in flagged.groupby("method")))
    return (f"**Leak guard: {len(flagged)} run(s) flagged** (test AUC above the Bayes oracle's on the same test "
            f"set + 3 DeLong SE; marked ⚠ in the tables): {names}.")


def fingerprint_text(runs: pd.DataFrame) -> str:
    groups = runs.groupby("fingerprint", sort=True)["method"]
    return "; ".join(f"`{fp}` ({', '.join(sorted(g.unique()))})" for fp, g in groups) or "none"
