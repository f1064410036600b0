"""Training-step cost of registered fusion methods relative to late fusion, measured in one run.

Usage::

    python benchmarks/bench_method_step.py [--methods cfcml,cmml,mdc] [--batch 64] [--steps 20]
        [--warmup 3] [--image-model test_efficientnet] [--image-size 32] [--views 1] [--rate 0.5]
        [--device cpu|cuda] [--threads 1] [--profile] [--profile-rows 15] [--json out.json]

``--methods`` (default: every registered method) is a comma-separated list of cases
``method[@option=value...][:stage]``: ``mdc:contrastive`` is MDC's stage-1 step,
``mdc@schedule=joint:supervised`` a step with option ``schedule: joint`` (values are read as
YAML).  A bare name stands for each stage the method trains in (``model.stages(10)``), one row per
stage.  ``late_fusion`` is always measured (first) and every ratio is to it.

What is measured (every case in this one process, same batch, same encoder config):

* time: median wall time of a full training step -- ``training_step`` (forward and losses, memory
  updates included), ``zero_grad``, ``backward`` and ``optimizer.step`` with the method's own
  ``configure_optimizer`` -- over ``--steps`` steps after ``--warmup`` untimed ones.  The cases'
  timed steps are interleaved round-robin, so a load change on a shared machine hits all of them
  alike; CUDA is synchronised around each step.  A method without an optimiser or without a
  differentiable loss (scikit-learn) is timed on ``training_step`` alone.
* memory, CPU: ``torch.profiler`` with ``profile_memory=True`` over one extra step, exported
  with ``export_memory_timeline``: peak live tensor bytes during the step minus the first sample,
  i.e. the peak *extra tensor memory* of a step (activations, gradients, temporaries, optimiser
  state; not allocator caching or Python objects).  The same measurement for every method.
* memory, CUDA: ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated
  just before it (the same quantity from the CUDA allocator).
* threads: ``--threads`` for torch and for every BLAS/OpenMP pool (numpy, scikit-learn), set
  before the libraries load.
* ``--profile``: after the table, each case's per-op table (``torch.profiler`` key averages of
  three steps, sorted by self CPU time, ``--profile-rows`` rows).

The batch is fabricated (no dataset needed): N(0, 1) images (``--views`` image views) and 12
tabular features, alternating labels (what the class-balanced samplers give), and a fraction
``--rate`` of samples missing one modality (half of them the image, half the tabular record),
zeroed as the harness does.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _threads_flag(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


# Every thread pool (torch's OpenMP, numpy's and scikit-learn's BLAS) gets --threads before the
# libraries start: an idle pool spinning after one case would slow the next one down.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = _threads_flag(sys.argv[1:])

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_FEATURES = 12
BASELINE = "late_fusion"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=None, help="comma-separated cases (default: every registered method)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-model", default="test_efficientnet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print each case's per-op profiler table")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


# -- what every case shares --------------------------------------------------------------------
def dataset_info(args: argparse.Namespace):
    from core.contract import DatasetInfo

    return DatasetInfo("bench", "binary", ("neg", "pos"), tuple(f"view{i}" for i in range(args.views)), 1,
                       (args.image_size, args.image_size), (), tuple(f"f{i}" for i in range(N_FEATURES)),
                       tuple((i, i + 1) for i in range(N_FEATURES)), "auc")


def make_batch(args: argparse.Namespace, device: torch.device):
    """The one fabricated batch every case trains on (see the module docstring)."""
    from core.batch import Batch

    g = torch.Generator().manual_seed(0)
    b = args.batch
    present = torch.ones(b, 2, dtype=torch.bool)
    n_missing = round(args.rate * b)
    present[: n_missing // 2, 0] = False
    present[n_missing // 2: n_missing, 1] = False
    views = tuple(f"view{i}" for i in range(args.views))
    images = {v: torch.randn(b, 1, args.image_size, args.image_size, generator=g) * present[:, :1, None, None]
              for v in views}
    tabular = torch.randn(b, N_FEATURES, generator=g) * present[:, 1:]
    return Batch(images, present[:, :1].expand(b, len(views)).clone(), tabular, torch.arange(b) % 2, present,
                 tuple(f"id{i}" for i in range(b))).to(device)


def parse_case(case: str) -> tuple[str, dict[str, Any], str | None]:
    """``method[@key=value...][:stage]`` -> (method, options, stage or None)."""
    spec, _, stage = case.partition(":")
    method, *pairs = spec.split("@")
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"case '{case}': option '{pair}' is not key=value")
        options[key] = yaml.safe_load(value)
    return method, options, stage or None


class Case:
    """A built method, its optimiser and the stage its step trains in."""

    def __init__(self, name: str, method: str, options: dict[str, Any], stage: str | None,
                 args: argparse.Namespace, device: torch.device) -> None:
        from core.encoders import EncoderConfig, ImageEncoderConfig
        from methods import create_method
        from methods.base import OptimizerSettings

        self.name = name
        torch.manual_seed(0)
        self.model = create_method(method, dataset_info(args), EncoderConfig(ImageEncoderConfig(model=args.image_model)),
                                   **options).to(device)
        self.optimizer, _ = self.model.configure_optimizer(OptimizerSettings(lr=1e-4, weight_decay=1e-4, epochs=10))
        stages = {s.name: s for s in self.model.stages(10)}
        if stage is not None and stage not in stages:
            raise SystemExit(f"case '{name}': method '{method}' has no stage '{stage}' (it has {sorted(stages)})")
        self.stage = stages[stage] if stage else next(iter(stages.values()))
        self.params = sum(p.numel() for p in self.model.parameters())
        self.model.train()

    def step(self, batch) -> None:
        loss = self.model.training_step(batch, self.stage)["loss"]
        if self.optimizer is None or not loss.requires_grad:
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def build_cases(spec: str | None, args: argparse.Namespace, device: torch.device
                ) -> tuple[list[Case], list[tuple[str, str]]]:
    """Every case, late_fusion first; a bare method name gives one case per training stage.
    A case that cannot be built is reported (name, error) instead of stopping the run."""
    from methods import list_methods

    entries = [c.strip() for c in (spec.split(",") if spec else list_methods()) if c.strip()]
    entries = [BASELINE] + [e for e in entries if parse_case(e) != (BASELINE, {}, None)]
    cases, failed = [], []
    for entry in entries:
        try:
            method, options, stage = parse_case(entry)
            case = Case(entry, method, options, stage, args, device)
            names = [s.name for s in case.model.stages(10)]
            if stage is None and len(names) > 1:
                cases += [Case(f"{entry}:{n}", method, options, n, args, device) for n in names]
            else:
                cases.append(case)
        except Exception as exc:  # a broken method must not hide the others
            if entry == BASELINE:
                raise
            failed.append((entry, f"{type(exc).__name__}: {exc}"))
    return cases, failed


# -- measurements ------------------------------------------------------------------------------
def median_step_ms(steps: dict[str, Callable[[], None]], warmup: int, repeats: int,
                   device: torch.device) -> dict[str, float]:
    """Median wall ms per call of each step; calls interleaved round-robin across the steps."""
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


def peak_extra_mib(step: Callable[[], None], device: torch.device) -> float:
    """Peak tensor memory (MiB) of one call of ``step`` above what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
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


def op_table(step: Callable[[], None], device: torch.device, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)   # numpy / scikit-learn BLAS, if already loaded
    except ImportError:
        pass
    device = torch.device(args.device)
    batch = make_batch(args, device)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cases, failed = build_cases(args.methods, args, device)
    for c in list(cases):            # one untimed step each: a case that cannot train is reported
        try:
            c.step(batch)
        except Exception as exc:
            if c.name == BASELINE:
                raise
            failed.append((c.name, f"{type(exc).__name__}: {exc}"))
            cases.remove(c)
    steps = {c.name: (lambda c=c: c.step(batch)) for c in cases}
    step_ms = median_step_ms(steps, args.warmup, args.steps, device)
    rows = [{"method": c.name, "params": c.params, "step_ms": step_ms[c.name],
             "peak_mib": peak_extra_mib(steps[c.name], device)} for c in cases]
    base = rows[0]
    for r in rows:
        r["time_ratio"] = r["step_ms"] / base["step_ms"]
        r["mem_ratio"] = r["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else float("nan")

    how = ("cuda max_memory_allocated during one step minus allocated before it" if device.type == "cuda" else
           "torch.profiler memory timeline (profile_memory): peak live tensor bytes of one step minus its first sample")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    load = f"{load_start} at start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end (1/5/15 min)"
    print(f"device={name} threads={args.threads} image_model={args.image_model} image={args.image_size}px "
          f"views={args.views} batch={args.batch} rate={args.rate} steps={args.steps} (median, interleaved) "
          f"warmup={args.warmup} load average={load}")
    print(f"memory: {how}; ratios to {BASELINE} in this run")
    width = max(len(r["method"]) for r in rows) + 2
    print(f"{'method':<{width}}{'params':>10}{'step ms':>10}{'peak MiB':>10}{'time x':>8}{'mem x':>8}")
    for r in rows:
        print(f"{r['method']:<{width}}{r['params']:>10}{r['step_ms']:>10.2f}{r['peak_mib']:>10.2f}"
              f"{r['time_ratio']:>8.2f}{r['mem_ratio']:>8.2f}")
    for case_name, error in failed:
        print(f"{case_name:<{width}}failed: {error}")
    if args.profile:
        for c in cases:
            print(f"\n== {c.name}: per-op table, 3 steps, sorted by self time ==")
            print(op_table(steps[c.name], device, args.profile_rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": name, "memory": how, "load": load,
                                               "rows": rows, "failed": dict(failed)}, indent=2))


if __name__ == "__main__":
    main()
