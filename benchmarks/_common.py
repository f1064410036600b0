"""Shared pieces of the step-cost benchmark scripts: the common CLI flags, the interleaved median
step timing, the CPU peak-memory measurement (torch profiler memory timeline: peak live tensor
bytes of one call minus the first sample) and the ratio table."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

import torch


def step_parser(description: str) -> argparse.ArgumentParser:
    """Flags every step-cost script takes (same encoder, batch and missing rate for all methods)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-model", default="test_efficientnet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def cpu_peak_mib(step: Callable[[], object]) -> float:
    """Peak live tensor memory (MiB) of one call of ``step`` above what was live before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(row) for row in sizes]
    return (max(totals) - totals[0]) / 2**20


def median_step_ms(steps: Mapping[str, Callable[[], object]], warmup: int, repeats: int,
                   device: torch.device) -> dict[str, float]:
    """Median wall milliseconds per call of each step; calls interleaved across the steps so that
    machine drift hits every case alike (CUDA synchronised around each call)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def print_ratio_table(rows: list[dict], key: str = "method", width: int = 14, digits: int = 1) -> None:
    """Rows with params, step_ms and peak_mib; adds time_ratio/mem_ratio against the first row."""
    base = rows[0]
    print(f"{key:<{width}}{'params':>10}{'step ms':>10}{'peak MiB':>10}{'time x':>8}{'mem x':>8}")
    for r in rows:
        r["time_ratio"] = r["step_ms"] / base["step_ms"]
        r["mem_ratio"] = r["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else float("nan")
        print(f"{r[key]:<{width}}{r['params']:>10}{r['step_ms']:>10.{digits}f}{r['peak_mib']:>10.{digits}f}"
              f"{r['time_ratio']:>8.2f}{r['mem_ratio']:>8.2f}")
