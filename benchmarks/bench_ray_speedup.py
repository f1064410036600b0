"""Speed-up of the Ray executor over the local one, on the same small grid, in one run.

Usage: python benchmarks/bench_ray_speedup.py [--workers 2] [--epochs 3]

Runs the grid (late_fusion + tabular_only x rates {0, 0.5} x seeds {0, 1}, synthetic data) twice
into fresh result folders: once with ``--executor local`` (torch with 1 thread per process, like
each Ray worker, so the comparison measures parallelism and not BLAS threading), once with
``--executor ray --workers N``. Each is a fresh subprocess, so start-up (imports, Ray, the MLflow
server) is included in both wall times. Prints both times and the ratio.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = """
dataset: {{name: synthetic, options: {{n_train: 1000, n_val: 250, n_test: 1000, sigma_pix: 0.1}}}}
methods: [late_fusion, tabular_only]
missing: {{pattern: mixed, protocol: both, rates: [0.0, 0.5]}}
seeds: [0, 1]
training: {{epochs: {epochs}, threads: 1}}
results_dir: {results}
"""


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.run", *args, "--no-leaderboard"], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for name, extra in (("local", []), ("ray", ["--executor", "ray", "--workers", str(args.workers)])):
            cfg = Path(tmp) / f"{name}.yaml"
            cfg.write_text(CONFIG.format(epochs=args.epochs, results=Path(tmp) / name))
            times[name] = timed(["--config", str(cfg), *extra], env)
            print(f"{name:>5}: {times[name]:.1f} s", flush=True)
    print(f"speed-up (local / ray with {args.workers} workers): {times['local'] / times['ray']:.2f}x "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
