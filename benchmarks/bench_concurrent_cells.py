"""Throughput of N cells sharing one device against one cell at a time, on the same grid.

Usage::

    python benchmarks/bench_concurrent_cells.py [--device cuda] [--concurrency 1,2,4] [--cells 4]
        [--model resnet18] [--image-size 224] [--images 512] [--epochs 2] [--batch 64]
        [--method late_fusion] [--precision auto] [--threads-per-worker 2] [--executor local|ray]
        [--json out.json]

The grid: ``--cells`` seeds of ``--method`` at missing rate 0 on a fabricated ``csv_manifest``
folder of ``--images`` JPEGs (``bench_image_cache.fabricate``, disk image cache shared by every
variant and decoded once before timing), ``--model`` at ``--image-size``, ``--epochs`` epochs.
Each concurrency N runs the whole grid in a fresh ``python -m benchmark.run`` subprocess into a
fresh results folder: N = 1 with the local executor (one cell at a time, in process), N > 1 with
``--executor local`` (default: N spawned worker processes on the one device, ``workers: N``) or
``--executor ray`` (``workers: N`` and fractional ``gpus_per_task: 1/N``; on CPU
``gpus_per_task: 0``), each worker with ``--threads-per-worker`` torch threads.
Reported: wall seconds, cells per minute and the speed-up over N = 1 (start-up included in every
variant alike).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]
from bench_image_cache import fabricate


def config(args: argparse.Namespace, data: Path, cache: Path, results: Path, n: int) -> dict:
    if n == 1:
        execution: dict = {"executor": "local"}
    elif args.executor == "local":  # N worker processes sharing the device
        execution = {"executor": "local", "workers": n, "threads_per_worker": args.threads_per_worker}
    else:
        execution = {"executor": "ray", "workers": n, "threads_per_worker": args.threads_per_worker, "retries": 0,
                     "gpus_per_task": round(1.0 / n, 4) if args.device == "cuda" else 0.0}
    return {"dataset": {"name": "csv_manifest", "root": str(data),
                        "options": {"image_size": args.image_size, "augment": True, "cache": "disk",
                                    "cache_dir": str(cache)}},
            "methods": [args.method], "seeds": list(range(args.cells)), "missing": {"rates": [0.0]},
            "encoders": {"image": {"model": args.model}},
            "training": {"max_epochs": args.epochs, "batch_size": args.batch, "device": args.device,
                         "precision": args.precision, "threads": args.threads_per_worker},
            "results_dir": str(results), "execution": execution}


def run_grid(cfg: dict, path: Path) -> float:
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmark.run", "--config", str(path), "--no-leaderboard"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark.run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--concurrency", default="1,2,4")
    p.add_argument("--cells", type=int, default=4)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--source-size", type=int, nargs=2, default=(768, 512))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--method", default="late_fusion")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="how N > 1 cells run at once: local worker processes (default) or Ray tasks")
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = fabricate(tmp_path / "data", args.images, tuple(args.source_size))
        cache = tmp_path / "cache"
        # Warm the disk image cache (one cell of one epoch, not timed) so no variant decodes JPEGs.
        warm = dict(config(args, data, cache, tmp_path / "warm", 1), seeds=[0])
        warm["training"] = dict(warm["training"], max_epochs=1)
        run_grid(warm, tmp_path / "warm.yaml")
        for n in [int(c) for c in args.concurrency.split(",")]:
            wall = run_grid(config(args, data, cache, tmp_path / f"results_{n}", n), tmp_path / f"grid_{n}.yaml")
            rows.append({"concurrency": n, "executor": "local" if n == 1 else args.executor,
                         "cells": args.cells, "wall_s": round(wall, 1),
                         "cells_per_min": round(60 * args.cells / wall, 2)})
            print(f"N={n}: {args.cells} cells in {wall:.1f} s ({rows[-1]['cells_per_min']:.2f} cells/min)", flush=True)
            for r in rows:
                r["speedup"] = round(rows[0]["wall_s"] / r["wall_s"], 2)
            if args.json:  # after every variant: a timeout still leaves the finished ones
                Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print("speed-up over N=1: " + ", ".join(f"N={r['concurrency']}: {r['speedup']:.2f}x" for r in rows))


if __name__ == "__main__":
    main()
