"""``python -m benchmark.tune``: equal-budget hyperparameter tuning (the CLI of ``benchmark.tuning``).

This module only parses flags and wires the layers below; why tuning works the way it does (one
budget for every method, no test access, resume, the tuned files) is told in
:mod:`benchmark.tuning`.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Sequence

from benchmark.cli import build_parser as run_parser
from benchmark.cli import guarded, overrides_from_args, parse_list, print_registries
from benchmark.config import load_config
from benchmark.execution import exit_status, handle_interrupts
from benchmark.tuning import load_tune_config, tune
from core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """``benchmark.run``'s flags (same meaning) plus the tuning ones."""
    p = run_parser()
    p.prog = "python -m benchmark.tune"
    p.description = ("Tune every method with the same Optuna budget (trials, sampler, pruner, seeds, epochs) on "
                     "validation data only, and write <results>/<dataset>/tuned/<method>.yaml for "
                     "`python -m benchmark.run --tuned`. Rerunning the same command resumes the studies. "
                     "--seeds are the evaluation seeds: their test rows are held out from tuning.")
    p.add_argument("--trials", type=int, help="COMPLETE + PRUNED trials per method (default: configs/tune.yaml)")
    p.add_argument("--tuning-seeds", help="comma-separated seeds used while tuning (default: configs/tune.yaml, 100,101)")
    p.add_argument("--tune-config", help="tuning settings (default: configs/tune.yaml)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<results-dir>/optuna.db)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.list:
            return print_registries()
        if args.tuned:
            raise ConfigError("--tuned is a flag of benchmark.run (evaluate tuned parameters), not of benchmark.tune")
        seeds = parse_list(args.tuning_seeds, int, "--tuning-seeds") if args.tuning_seeds else None
        if args.trials is not None and args.trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {args.trials}")
        tcfg = load_tune_config(args.tune_config, trials=args.trials, tuning_seeds=seeds)
        cfg = load_config(args.config, overrides_from_args(args))
        if args.missing_rate is None and tcfg.missing_rate is not None:
            cfg = replace(cfg, missing=replace(cfg.missing, rates=(float(tcfg.missing_rate),)))
        _, failures = tune(cfg, tcfg, args.storage)
        return 1 if failures else 0

    # SIGTERM as well as Ctrl-C becomes a KeyboardInterrupt, so the trial and study runs are closed
    # as KILLED (a bare SIGTERM used to leave both RUNNING until the next start); exit 128 + signal.
    with handle_interrupts():
        code = guarded(body, "interrupted: finished trials are kept; rerun the same command to resume")
    return exit_status() if code == 130 else code


if __name__ == "__main__":
    sys.exit(main())
