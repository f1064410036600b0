"""Coverage of the leaderboard's intervals, by simulation on the synthetic dataset's Bayes oracle.

For each of ``--replicates`` replicate experiments, the oracle row of a 3-seed grid is built exactly
as the leaderboard builds it (``benchmark.summary.intervals.honest_interval`` on the oracle's test
predictions) and checked against the *population* Bayes AUC of the rate.  Two designs:

* ``shared``: one dataset per replicate, every seed sharing its test set (a fixed data seed, like
  an official split): the seed-to-seed spread alone would miss the test-sample noise entirely;
* ``run``: the data follow the run seed (the synthetic default, ``seed: run``).

Prints the coverage per (design, rate) with its binomial standard error and writes JSON.  The
target is 93-97 % at the 95 % level.  Usage:
    python benchmarks/interval_coverage.py --replicates 200 [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.summary.intervals import auc_effects, honest_interval  # noqa: E402
from core.masks import MissingSpec  # noqa: E402
from core.metrics import compute_metrics  # noqa: E402
from datasets import create_dataset  # noqa: E402


def oracle_seed(dataset, oracle, table, rate: float, seed: int) -> tuple[float, object]:
    data = dataset.prepare(table, MissingSpec("mixed", rate, "both"), seed)
    test = data.splits["test"]
    probs = oracle.scores(test.table, test.rows, test.present)
    auc = compute_metrics("binary", test.labels, probs)["auc"]
    return auc, auc_effects(test.ids, test.labels, probs[:, 1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    options = dict(n_train=60, n_val=30, n_test=args.n_test, sigma_pix=0.1, mc_samples=400_000)
    started = time.time()
    results = {}
    population = {}
    for design in ("shared", "run"):
        for rate in args.rates:
            covered, widths = 0, []
            for r in range(args.replicates):
                values, effects = [], []
                for s in range(args.seeds):
                    data_seed = 1000 * r + (s if design == "run" else 0)
                    ds = create_dataset("synthetic", **{**options, "seed": data_seed})
                    oracle = ds.oracle()
                    if rate not in population:
                        population[rate] = oracle.population_auc("mixed", rate)
                    auc, eff = oracle_seed(ds, oracle, ds.load_table(), rate, s)
                    values.append(auc)
                    effects.append(eff)
                summary, _ = honest_interval(values, effects)
                covered += summary.ci_low <= population[rate] <= summary.ci_high
                widths.append(summary.ci_high - summary.ci_low)
            cov = covered / args.replicates
            se = math.sqrt(cov * (1 - cov) / args.replicates)
            results[f"{design}@{rate:g}"] = {"coverage": cov, "se": se, "mean_width": float(np.mean(widths)),
                                             "population_auc": population[rate], "replicates": args.replicates}
            print(f"{design:<7} rate {rate:<4g} coverage {cov:.3f} ± {se:.3f}  mean width {np.mean(widths):.4f}  "
                  f"(population Bayes AUC {population[rate]:.4f}, {args.replicates} replicates x {args.seeds} seeds)",
                  flush=True)
    print(f"{time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
