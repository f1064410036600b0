"""``python -m benchmark.run``: run the grid methods x missing specs x seeds on one dataset.

Every cell is a frozen RunSpec; cells already FINISHED in MLflow are skipped (resume), so an
interrupted grid continues where it stopped.  At the end the leaderboard is rebuilt from MLflow
alone (``benchmark.summary``).  This module only parses flags and wires the layers below.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch
from rich.console import Console

from benchmark.cli import build_parser, guarded, overrides_from_args, print_registries
from benchmark.config import BenchmarkConfig, load_config
from benchmark.execution import run_grid
from benchmark.grid import build_grid
from benchmark.summary import build_leaderboards, render_console
from benchmark.training import resolve_device
from benchmark.tuning import apply_tuned
from datasets import create_dataset


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.list:
            return print_registries()
        cfg = load_config(args.config, overrides_from_args(args))
        return run_benchmark(cfg, build_leaderboard=not args.no_leaderboard, tuned=args.tuned)

    return guarded(body, "interrupted: finished runs are kept; rerun the same command to resume")


def run_benchmark(cfg: BenchmarkConfig, build_leaderboard: bool = True, tuned: bool = False) -> int:
    """Run every unfinished cell of ``cfg``; returns the process exit status.

    ``tuned``: each method runs with its tuned parameters (``benchmark.tuning.apply_tuned``), a
    different run identity, so tuned and default runs are distinct cells of the same store."""
    console = Console(stderr=True)
    results_dir = Path(cfg.results_dir)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    resolve_device(cfg.training.device)  # fail early on --device cuda without CUDA
    dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
    grid = build_grid(cfg, with_oracle=dataset.oracle() is not None)
    if tuned:
        grid = apply_tuned(cfg, grid, results_dir)
    outcome = run_grid(cfg, grid, console)
    if build_leaderboard:
        written = build_leaderboards(outcome.tracking_uri, results_dir, [cfg.dataset.name])
        render_console(outcome.tracking_uri, cfg.dataset.name, console)
        for path in written:
            console.print(f"leaderboard: {path}")
    console.print(f"MLflow store: {outcome.tracking_uri}  (open with: make ui)")
    if outcome.failures:
        console.print(f"[red]{len(outcome.failures)} cell(s) failed[/]:")
        for failure in outcome.failures:
            console.print(f"  {failure}", markup=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
