"""Speed-up of the Ray executor over the local one, on the same grid, in one run.

Usage: python benchmarks/bench_ray_speedup.py [--workers 2] [--grid default|small]

``--grid default`` is the ``make bench`` grid (configs/default.yaml: 5 baselines x 5 rates x 3 seeds
on the synthetic data); ``small`` is late_fusion + early_fusion x rates {0, 0.5} x 3 seeds. The grid
runs into fresh result folders (each with its own dataset cache, so data generation is counted in
every variant) three times, each a fresh ``python -m benchmark.run`` subprocess so that start-up
(imports, data, Ray, the MLflow server) is in the wall time:

- ``local, 1 thread``: the serial executor with torch on 1 thread, like each Ray worker, so the
  ratio to Ray measures parallelism and not BLAS threading (the issue's comparison);
- ``local, default threads``: what ``make bench`` does (torch's own thread count);
- ``ray``: ``--executor ray --workers N``, 1 torch thread per worker, local MLflow server.

Prints wall times and, from each MLflow store, the grid span (first cell start to last cell end),
which leaves out the fixed start-up and shut-down cost.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def grid_config(grid: str, results: Path, threads: int) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    if grid == "small":
        cfg["methods"] = ["late_fusion", "early_fusion"]
        cfg["missing"]["rates"] = [0.0, 0.5]
    cfg["dataset"] = {"name": cfg["dataset"], "options": {"cache_dir": str(results / "cache")}}
    cfg["training"]["threads"] = threads
    cfg["results_dir"] = str(results)
    return cfg


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.run", *args, "--no-leaderboard"], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def grid_span(results: Path) -> tuple[float, int]:
    """Seconds from the first grid cell's start to the last one's end, and the cell count."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{results}/mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") and r.info.status == "FINISHED"]
    return (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000.0, len(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--grid", choices=["default", "small"], default="default")
    p.add_argument("--variants", default="local1,local,ray",
                   help="comma-separated subset of local1 (1 thread), local (default threads), ray")
    p.add_argument("--keep", type=Path, default=None, help="keep the result folders here (default: a temp dir)")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    all_variants = {"local1": ("local, 1 thread", 1, [], {"OMP_NUM_THREADS": "1"}),
                    "local": ("local, default threads", 0, [], {}),
                    "ray": (f"ray, {args.workers} workers", 1, ["--executor", "ray", "--workers", str(args.workers)], {})}
    chosen = args.variants.split(",")
    if "ray" not in chosen or any(v not in all_variants for v in chosen):
        p.error(f"--variants: a subset of {', '.join(all_variants)} that includes ray")
    variants = [all_variants[v] for v in all_variants if v in chosen]
    print(f"grid {args.grid}, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        times, spans = {}, {}
        for i, (name, threads, extra, extra_env) in enumerate(variants):
            results = Path(tmp) / name.replace(",", "").replace(" ", "_")
            cfg = results.with_suffix(".yaml")
            results.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(yaml.safe_dump(grid_config(args.grid, results, threads)))
            times[name] = timed(["--config", str(cfg), *extra], {**env, **extra_env})
            spans[name], cells = grid_span(results)
            print(f"{name:>24}: {times[name]:7.1f} s wall, grid span {spans[name]:7.1f} s ({cells} cells)", flush=True)
    ray_name = variants[-1][0]
    for name, *_ in variants[:-1]:
        print(f"speed-up of {ray_name} over {name}: {times[name] / times[ray_name]:.2f}x wall, "
              f"{spans[name] / spans[ray_name]:.2f}x grid span")


if __name__ == "__main__":
    main()
