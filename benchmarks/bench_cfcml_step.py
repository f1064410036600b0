"""Training-step cost of CFCML relative to late fusion, same encoder, same batch, one run.

Usage::

    python benchmarks/bench_cfcml_step.py [--batch 64] [--steps 20] [--warmup 3]
        [--image-model test_efficientnet] [--image-size 32] [--views 1] [--rate 0.5]
        [--device cpu|cuda] [--threads 1] [--methods late_fusion,cfcml]

What is measured (all methods in this one process, baseline first; the ratios are to it):

* time: median wall time of a full training step — ``training_step`` (forward + CE + HRM
  losses), ``backward`` and ``optimizer.step`` with the method's own ``configure_optimizer`` —
  over ``--steps`` steps after ``--warmup`` untimed ones (CUDA synchronised around each step).
  The methods' timed steps are interleaved round-robin so that a load change on the shared CPU
  hits all of them alike.
* memory, CPU: ``torch.profiler`` with ``profile_memory=True`` over one extra step, exported with
  ``export_memory_timeline`` (the tensor allocator's live-bytes timeline by category); we report
  its peak minus its first sample, i.e. the peak *extra tensor memory* of a step (activations,
  gradients, temporaries; not allocator caching, not Python objects).
* memory, CUDA: ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated
  before it (the same quantity, from the CUDA allocator).

The batch is fabricated (no dataset needed): images N(0,1), 12 tabular features N(0,1),
alternating binary labels (what CFCML's class-balanced sampler gives), and a fraction ``--rate`` of
samples missing one modality (half image, half tabular), zeroed as the harness does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_peak_mib, median_step_ms, print_ratio_table, step_parser  # noqa: E402  (benchmarks/_common.py)



def _build(method: str, args: argparse.Namespace, device: torch.device):
    from core.contract import DatasetInfo
    from core.encoders import EncoderConfig, ImageEncoderConfig
    from methods import create_method
    from methods.base import OptimizerSettings

    views = tuple(f"view{i}" for i in range(args.views))
    n_feat = 12
    info = DatasetInfo("bench", "binary", ("neg", "pos"), views, 1, (args.image_size, args.image_size), (),
                       tuple(f"f{i}" for i in range(n_feat)), tuple((i, i + 1) for i in range(n_feat)), "auc")
    torch.manual_seed(0)
    model = create_method(method, info, EncoderConfig(ImageEncoderConfig(model=args.image_model))).to(device)
    optimizer, _ = model.configure_optimizer(OptimizerSettings(lr=1e-4, weight_decay=1e-4, epochs=10))
    return model, optimizer


def _batch(args: argparse.Namespace, device: torch.device):
    from core.batch import Batch

    g = torch.Generator().manual_seed(0)
    b = args.batch
    present = torch.ones(b, 2, dtype=torch.bool)
    n_missing = int(round(args.rate * b))
    present[: n_missing // 2, 0] = False
    present[n_missing // 2: n_missing, 1] = False
    views = tuple(f"view{i}" for i in range(args.views))
    images = {v: torch.randn(b, 1, args.image_size, args.image_size, generator=g) * present[:, :1, None, None]
              for v in views}
    return Batch(images, present[:, :1].expand(b, len(views)).clone(),
                 torch.randn(b, 12, generator=g) * present[:, 1:], torch.arange(b) % 2, present,
                 tuple(f"id{i}" for i in range(b))).to(device)


def _step(model, optimizer, batch) -> None:
    from methods.base import Stage

    loss = model.training_step(batch, Stage("supervised", 1))["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _peak_extra_mib(model, optimizer, batch, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        _step(model, optimizer, batch)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return cpu_peak_mib(lambda: _step(model, optimizer, batch))


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--methods", default="late_fusion,cfcml", help="baseline first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = _batch(args, device)
    names = args.methods.split(",")
    built = {name: _build(name, args, device) for name in names}
    for model, _ in built.values():
        model.train()
    step_ms = median_step_ms({name: (lambda n=name: _step(*built[n], batch)) for name in names},
                             args.warmup, args.steps, device)
    rows = []
    for name in names:
        model, optimizer = built[name]
        rows.append({"method": name, "params": sum(p.numel() for p in model.parameters()),
                     "step_ms": step_ms[name],
                     "peak_mib": _peak_extra_mib(model, optimizer, batch, device)})
    how = ("cuda max_memory_allocated minus allocated before the step" if device.type == "cuda" else
           "torch.profiler memory timeline (profile_memory): peak live tensor bytes minus first sample")
    print(f"device={args.device} threads={args.threads} image_model={args.image_model} "
          f"image={args.image_size}px views={args.views} batch={args.batch} rate={args.rate} "
          f"steps={args.steps} (median, interleaved) warmup={args.warmup}")
    print(f"memory: {how}")
    print_ratio_table(rows)

if __name__ == "__main__":
    main()
