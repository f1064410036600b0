"""``python -m benchmark.run``: run the grid methods x missing specs x seeds on one dataset.

Every cell is a frozen RunSpec; cells already FINISHED in MLflow are skipped (resume), so an
interrupted grid continues where it stopped.  At the end the leaderboard is rebuilt from MLflow
alone (``benchmark.summary``).  This module only parses flags and wires the layers below.

Exit status: 0 all cells finished, 1 some cells failed (listed), 2 a user or storage error (one
message), 130 Ctrl-C / 143 SIGTERM (the current cell and the invocation closed as KILLED, no
leaderboard written; a second signal exits at once).  The leaderboards of a store other than
``<results-dir>/mlflow.db`` go next to that store (or to an explicit ``--results-dir``).

``--suite scenarios`` (``make scenarios``) runs every entry of ``configs/suites/scenarios.yaml``
one after another into the suite's store (``results/scenarios/mlflow.db``), then writes one
leaderboard per entry and the suite summary (``benchmark.summary.scenarios``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from rich.console import Console

from benchmark.cli import build_parser, guarded, overrides_from_args, parse_list, print_registries
from benchmark.config import BenchmarkConfig, load_config
from benchmark.execution import exit_status, handle_interrupts, publish_leaderboards, publish_suite, run_grid
from benchmark.grid import build_grid
from benchmark.suite import check_disjoint, entry_config, entry_grid, entry_tags, load_suite, tag_entry
from benchmark.summary import render_summary
from benchmark.tracking import leaderboard_dir, resolve_tracking_uri
from benchmark.training import resolve_device
from benchmark.tuning import apply_tuned
from core.errors import ConfigError
from datasets import create_dataset


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.list:
            return print_registries()
        if args.suite:
            return run_suite(args)
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


def run_suite(args: argparse.Namespace) -> int:
    """``--suite NAME``: every entry's config through :func:`run_benchmark` (so resume and run
    identity are unchanged), each entry's runs tagged ``suite_entry`` after its grid, then the
    per-entry leaderboards and ``summary.md|csv|html`` built from the store.  Other flags apply to
    every entry.  Exit status: the worst entry's (1 when some cell failed)."""
    if args.tuned or args.dataset:
        raise ConfigError("--suite: --tuned and --dataset are not supported (the suite file names the datasets)")
    console = Console(stderr=True)
    only = parse_list(args.suite_entries, str, "--suite-entries") if args.suite_entries else None
    suite = load_suite(args.suite, only)
    if args.config:
        suite = replace(suite, base=Path(args.config))
    cli = overrides_from_args(args)
    configs = [(entry, entry_config(suite, entry, cli)) for entry in suite.entries]
    stores = {(cfg.results_dir, cfg.tracking_uri) for _, cfg in configs}
    if len(stores) > 1:
        raise ConfigError(f"suite {suite.name}: every entry must use one store (results_dir, tracking_uri); got {stores}")
    grids = [(entry.name, entry_grid(cfg)) for entry, cfg in configs]
    check_disjoint(grids)  # two entries never share a run or a leaderboard row
    results_dir = Path(configs[0][1].results_dir)
    uri = resolve_tracking_uri(None, configs[0][1].tracking_uri, results_dir)
    worst = 0
    for i, ((entry, cfg), (_, grid)) in enumerate(zip(configs, grids), 1):
        console.rule(f"suite {suite.name}: entry {entry.name} ({i}/{len(configs)}, {len(grid)} cells)")
        code = run_benchmark(cfg, build_leaderboard=False)
        tag_entry(uri, results_dir, cfg.dataset.name, {s.key() for s in grid}, entry_tags(suite, entry, cfg))
        worst = max(worst, code)
    if not args.no_leaderboard:
        written = publish_suite(uri, results_dir, suite.name)
        if written:
            console.print(f"suite summary: {results_dir / 'summary.md'} (.csv, .html); per entry: "
                          f"{results_dir}/<entry>/leaderboard.md ({len(written)} files written)", markup=False)
    return worst


if __name__ == "__main__":
    sys.exit(main())
