"""Training-step cost of CMML relative to late fusion, same encoder and same batch.

Usage::

    python benchmarks/bench_cmml_step.py [--batch 64] [--steps 20] [--warmup 3]
        [--image-model test_efficientnet] [--image-size 32] [--views 1] [--rate 0.5]
        [--device cpu|cuda] [--threads 1]

What is measured (one run, no repetitions across processes):

* time: median wall time of a full training step — ``training_step`` (forward + losses; CMML's
  memory enqueue included), ``backward`` and ``optimizer.step`` — over ``--steps`` steps after
  ``--warmup`` untimed steps (CUDA is synchronised around each step);
* memory, CUDA: ``torch.cuda.max_memory_allocated`` during the timed steps minus the memory
  allocated before them (model, optimiser state and batch already resident): the step's peak
  extra tensor memory;
* memory, CPU: torch has no CPU allocator statistics, so each method runs in a *fresh
  subprocess* and we report the growth of the process's peak resident set size (``ru_maxrss``)
  from just before the first step to the end — activations, gradients and Adam state, plus any
  allocator caching.  This is coarse (page granularity, includes glibc caching) but compares like
  with like.

The batch is fabricated (no dataset needed): images N(0,1), tabular N(0,1) with 12 features,
binary labels, and a fraction ``--rate`` of samples missing one modality (half image, half
tabular).  Both methods use the harness's ``EncoderConfig`` with the same image model.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_step_ms, print_ratio_table, step_parser  # noqa: E402  (benchmarks/_common.py)



def _rss_kib() -> int:
    """Current resident set size in KiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() // 1024


def run_one(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Time and memory of one method's training step (called inside a fresh process)."""
    from core.batch import Batch
    from core.contract import DatasetInfo
    from core.encoders import EncoderConfig, ImageEncoderConfig
    from methods import create_method
    from methods.base import OptimizerSettings, Stage

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    views = tuple(f"view{i}" for i in range(args.views))
    n_feat = 12
    info = DatasetInfo("bench", "binary", ("neg", "pos"), views, 1, (args.image_size, args.image_size), (),
                       tuple(f"f{i}" for i in range(n_feat)), (), "auc")
    model = create_method(method, info, EncoderConfig(ImageEncoderConfig(model=args.image_model))).to(device)
    optimizer, _ = model.configure_optimizer(OptimizerSettings(lr=1e-4, weight_decay=1e-4, epochs=10))

    b = args.batch
    present = torch.ones(b, 2, dtype=torch.bool)
    n_missing = int(round(args.rate * b))
    present[: n_missing // 2, 0] = False
    present[n_missing // 2: n_missing, 1] = False
    images = {v: torch.randn(b, 1, args.image_size, args.image_size) * present[:, :1, None, None] for v in views}
    batch = Batch(images, present[:, :1].expand(b, len(views)).clone(), torch.randn(b, n_feat) * present[:, 1:],
                  torch.randint(0, 2, (b,)), present, tuple(f"id{i}" for i in range(b))).to(device)
    stage = Stage("supervised", 1)
    model.train()

    def step() -> None:
        loss = model.training_step(batch, stage)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    rss_before = _rss_kib()
    step_ms = median_step_ms({method: step}, args.warmup, args.steps, device)[method]
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
        how = "cuda max_memory_allocated minus resident before the first step"
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        how = "peak RSS growth (ru_maxrss) from just before the first step, fresh process"
    params = sum(p.numel() for p in model.parameters())
    return {"method": method, "step_ms": step_ms, "peak_mib": peak_mib,
            "params": params, "memory_measure": how}


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--methods", default="late_fusion,cmml", help="baseline first")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    rows = []
    for method in args.methods.split(","):
        child = [a for a in sys.argv[1:]] + ["--one", method]
        out = subprocess.run([sys.executable, __file__, *child], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"device={args.device} threads={args.threads} image_model={args.image_model} "
          f"image={args.image_size}px views={args.views} batch={args.batch} rate={args.rate} "
          f"steps={args.steps} (median) warmup={args.warmup}")
    print(f"memory: {base['memory_measure']}")
    print_ratio_table(rows)

if __name__ == "__main__":
    main()
