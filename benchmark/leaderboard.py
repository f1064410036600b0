"""``python -m benchmark.leaderboard``: leaderboards built from the MLflow store alone.

The command line only; what is read, computed and written is ``benchmark.summary``.  Per dataset
it writes ``results/<dataset>/leaderboard.md``, ``.csv``, ``.html`` and the plots, and refreshes
``results/README.md`` (every dataset of the store, ranked across datasets when there are two).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from benchmark.summary import build_leaderboards, datasets_in_store
from benchmark.tracking import resolve_tracking_uri
from core.errors import BenchmarkError


def main(argv: Sequence[str] | None = None) -> int:
    """Build the leaderboards; exit 0 with the written paths, 1 when the store has no runs, 2 on a
    benchmark error (e.g. two runs' predictions disagreeing on a label)."""
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard",
                                description="Build leaderboards (md, csv, html, plots) from the MLflow store.")
    p.add_argument("--dataset", action="append", help="dataset(s) to summarise (default: every dataset in the store)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--tracking-uri", help="default: sqlite:///<results-dir>/mlflow.db or MLFLOW_TRACKING_URI")
    args = p.parse_args(argv)
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
    sys.exit(main())
