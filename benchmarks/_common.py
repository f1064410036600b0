"""Shared pieces of the step-cost benchmark scripts: the common CLI flags and the CPU peak-memory
measurement (torch profiler memory timeline: peak live tensor bytes of one call minus the first sample)."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Callable


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
