"""``python -m benchmark.leaderboard``: leaderboards built from the MLflow store alone.

The command line only; what is read, computed and written is ``benchmark.summary``.  Per dataset
it writes ``results/<dataset>/leaderboard.md``, ``.csv``, ``.html`` (the interactive page) and the
plots, and refreshes ``results/README.md`` (every dataset of the store, ranked across datasets when
there are two) and ``results/index.html`` (the page of the whole store).

``--suite scenarios`` instead rebuilds a suite's files from its store alone: one leaderboard per
entry (``results/scenarios/<entry>/``) and ``results/scenarios/summary.md|csv|html``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from benchmark.execution import handle_interrupts, publish_leaderboards, publish_suite
from benchmark.suite import load_suite
from benchmark.summary import datasets_in_store
from benchmark.tracking import leaderboard_dir, resolve_tracking_uri
from core.errors import BenchmarkError


def main(argv: Sequence[str] | None = None) -> int:
    """Build the leaderboards; exit 0 with the written paths, 1 when the store has no runs, 2 on a
    benchmark error (e.g. two runs' predictions disagreeing on a label)."""
    p = argparse.ArgumentParser(prog="python -m benchmark.leaderboard",
                                description="Build leaderboards (md, csv, html, plots) from the MLflow store.")
    p.add_argument("--dataset", action="append", help="dataset(s) to summarise (default: every dataset in the store)")
    p.add_argument("--results-dir", help="where the leaderboards go (default: results, or the folder of the "
                                         "--tracking-uri SQLite file; a server URI needs --results-dir)")
    p.add_argument("--tracking-uri", help="default: sqlite:///<results-dir>/mlflow.db or MLFLOW_TRACKING_URI")
    p.add_argument("--all-fingerprints", action="store_true",
                   help="show runs of older code or data as rows of their own (default: each row keeps the "
                        "newest code/data fingerprint and lists the superseded runs)")
    p.add_argument("--mlflow-ui", metavar="URL",
                   help="URL of a served MLflow UI (e.g. http://127.0.0.1:5000, see make ui): the page links "
                        "each run id to it")
    p.add_argument("--suite", help="rebuild a suite's per-entry leaderboards and summary (e.g. scenarios; default "
                                   "results dir: the suite file's, e.g. results/scenarios)")
    args = p.parse_args(argv)
    try:
        suite = load_suite(args.suite) if args.suite else None  # its name and store folder (results/scenarios)
        results_dir = Path(args.results_dir or (suite.results_dir if suite else "results"))
        uri = resolve_tracking_uri(args.tracking_uri, None, results_dir)
        out = leaderboard_dir(uri, results_dir, explicit=args.results_dir is not None or args.suite is not None)
        datasets = args.dataset or datasets_in_store(uri)
        with handle_interrupts():  # files are replaced together at the end, never half-written
            if suite is not None:
                written = publish_suite(uri, out, suite.name, mlflow_ui=args.mlflow_ui)
            else:
                written = publish_leaderboards(uri, out, datasets, all_fingerprints=args.all_fingerprints,
                                               mlflow_ui=args.mlflow_ui)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous leaderboard files are unchanged", file=sys.stderr)
        return 130
    if not written:
        print(f"no runs in {uri}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
