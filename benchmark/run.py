"""``python -m benchmark.run``: run the grid methods x missing specs x seeds on one dataset.

Every cell is a frozen RunSpec; cells already FINISHED in MLflow are skipped (resume), so an
interrupted grid continues where it stopped.  At the end the leaderboard is rebuilt from MLflow
alone (``benchmark.summary``).  This module only parses flags and wires the layers below.

Exit status: 0 all cells finished, 1 some cells failed (listed), 2 a user or storage error (one
message), 130 Ctrl-C / 143 SIGTERM (the current cell and the invocation closed as KILLED, no
leaderboard written; a second signal exits at once).  The leaderboards of a store other than
``<results-dir>/mlflow.db`` go next to that store (or to an explicit ``--results-dir``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch
from rich.console import Console

from benchmark.cli import build_parser, guarded, overrides_from_args, print_registries
from benchmark.config import BenchmarkConfig, load_config
from benchmark.execution import exit_status, handle_interrupts, publish_leaderboards, run_grid
from benchmark.grid import build_grid
from benchmark.summary import render_summary
from benchmark.tracking import leaderboard_dir, resolve_tracking_uri
from benchmark.training import resolve_device
from benchmark.tuning import apply_tuned
from datasets import create_dataset


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.list:
            return print_registries()
        cfg = load_config(args.config, overrides_from_args(args))
        return run_benchmark(cfg, build_leaderboard=not args.no_leaderboard, tuned=args.tuned,
                             results_dir_given=args.results_dir is not None)

    with handle_interrupts():
        code = guarded(body, "interrupted: the current cell and this invocation are closed as KILLED, finished "
                             "runs are kept, no leaderboard was written; rerun the same command to resume")
    return exit_status() if code == 130 else code


def run_benchmark(cfg: BenchmarkConfig, build_leaderboard: bool = True, tuned: bool = False,
                  results_dir_given: bool = False) -> int:
    """Run every unfinished cell of ``cfg``; returns the process exit status.

    ``tuned``: each method runs with its tuned parameters (``benchmark.tuning.apply_tuned``), a
    different run identity, so tuned and default runs are distinct cells of the same store.
    ``results_dir_given``: ``--results-dir`` was passed (the leaderboards go there whatever the store)."""
    console = Console(stderr=True)
    results_dir = Path(cfg.results_dir)
    boards = None
    if build_leaderboard:  # where the leaderboards go, decided before anything is written
        explicit = results_dir_given or results_dir.resolve() != Path(BenchmarkConfig.results_dir).resolve()
        boards = leaderboard_dir(resolve_tracking_uri(None, cfg.tracking_uri, results_dir), results_dir, explicit)
        if boards.resolve() != results_dir.resolve():
            console.print(f"leaderboards of this store go to {boards}/ (pass --results-dir to choose)")
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    resolve_device(cfg.training.device)  # fail early on --device cuda without CUDA
    dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
    grid = build_grid(cfg, with_oracle=dataset.oracle() is not None)
    if tuned:
        grid = apply_tuned(cfg, grid, results_dir)
    outcome = run_grid(cfg, grid, console)
    if boards is not None:
        written = publish_leaderboards(outcome.tracking_uri, boards, [cfg.dataset.name])
        render_summary(outcome.tracking_uri, cfg.dataset.name, console)  # the headline; full tables: files
        pages = [p for p in written if p.suffix == ".html"]
        for path in pages:
            console.print(f"page: {path}", markup=False)
        if written:
            console.print(f"full tables: {boards / cfg.dataset.name}/leaderboard.md and .csv "
                          f"({len(written) - len(pages)} more files written)", markup=False)
    console.print(f"MLflow store: {outcome.tracking_uri}  (open with: make ui)")
    if outcome.failures:
        console.print(f"[red]{len(outcome.failures)} cell(s) failed[/]:")
        for failure in outcome.failures:
            console.print(f"  {failure}", markup=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
