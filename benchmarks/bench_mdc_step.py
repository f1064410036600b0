"""Training-step cost of ``mdc`` relative to ``late_fusion``: same encoder, same batch, one run.

Usage::

    python benchmarks/bench_mdc_step.py [--batch 64] [--steps 20] [--warmup 3] [--rate 0.5]
        [--image-model test_efficientnet] [--image-size 32] [--device cpu|cuda] [--threads 1]
        [--cases late_fusion,mdc:supervised,mdc:contrastive,mdc@joint:supervised]

A case is ``method[@schedule][:stage]``; the first case is the baseline the ratios refer to.
``mdc:contrastive`` is a stage-1 step, ``mdc:supervised`` a stage-2 step (three branches through
the shared head), ``mdc@joint:supervised`` a step of ``schedule: joint`` (both losses).

What is measured (every case in this one process):

* time: median wall time of a full training step — ``training_step``, ``backward``,
  ``optimizer.step`` with the method's own ``configure_optimizer`` — over ``--steps`` steps after
  ``--warmup`` untimed ones; the cases' timed steps are interleaved round-robin so that a load
  change on a shared CPU hits all of them alike; CUDA is synchronised around each step.
* memory, CPU: ``torch.profiler`` with ``profile_memory=True`` over one extra step, exported with
  ``export_memory_timeline`` (live tensor bytes by category over time); we report its peak minus
  its first sample: the peak *extra tensor memory* of a step (activations, gradients, optimiser
  state on first use, temporaries), not allocator caching or Python objects.
* memory, CUDA: ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated
  just before it (the same quantity, from the CUDA caching allocator's accounting).

The batch is fabricated: N(0, 1) images and 12 tabular features, alternating binary labels, and a
fraction ``--rate`` of samples missing one modality (half image, half tabular), zeroed as the
harness does.  Contrastive terms only use samples with both modalities.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_peak_mib, median_step_ms, print_ratio_table, step_parser  # noqa: E402  (benchmarks/_common.py)

N_FEATURES = 12



def build(case: str, args: argparse.Namespace, device: torch.device):
    """(model, optimizer, stage) for a case ``method[@schedule][:stage]``."""
    from core.contract import DatasetInfo
    from core.encoders import EncoderConfig, ImageEncoderConfig
    from methods import create_method
    from methods.base import OptimizerSettings, Stage

    spec, _, stage = case.partition(":")
    method, _, schedule = spec.partition("@")
    options = {"schedule": schedule} if schedule else {}
    info = DatasetInfo("bench", "binary", ("neg", "pos"), ("view0",), 1, (args.image_size, args.image_size), (),
                       tuple(f"f{i}" for i in range(N_FEATURES)), tuple((i, i + 1) for i in range(N_FEATURES)),
                       "auc")
    torch.manual_seed(0)
    model = create_method(method, info, EncoderConfig(ImageEncoderConfig(model=args.image_model)),
                          **options).to(device)
    optimizer, _ = model.configure_optimizer(OptimizerSettings(lr=1e-4, weight_decay=1e-4, epochs=10))
    return model, optimizer, Stage(stage or "supervised", 1, select_model=stage != "contrastive")


def make_batch(args: argparse.Namespace, device: torch.device):
    from core.batch import Batch

    g = torch.Generator().manual_seed(0)
    b = args.batch
    present = torch.ones(b, 2, dtype=torch.bool)
    n_missing = int(round(args.rate * b))
    present[: n_missing // 2, 0] = False
    present[n_missing // 2: n_missing, 1] = False
    images = torch.randn(b, 1, args.image_size, args.image_size, generator=g) * present[:, :1, None, None]
    tabular = torch.randn(b, N_FEATURES, generator=g) * present[:, 1:]
    return Batch({"view0": images}, present[:, :1].clone(), tabular, torch.arange(b) % 2, present,
                 tuple(f"id{i}" for i in range(b))).to(device)


def step(model, optimizer, stage, batch) -> None:
    loss = model.training_step(batch, stage)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def peak_extra_mib(model, optimizer, stage, batch, device: torch.device) -> float:
    """Peak tensor memory of one step above what was live before it (see module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(model, optimizer, stage, batch)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return cpu_peak_mib(lambda: step(model, optimizer, stage, batch))


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument("--cases", default="late_fusion,mdc:supervised,mdc:contrastive,mdc@joint:supervised",
                        help="comma-separated method[@schedule][:stage]; baseline first")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = make_batch(args, device)
    cases = args.cases.split(",")
    built = {case: build(case, args, device) for case in cases}
    for model, _, _ in built.values():
        model.train()
    step_ms = median_step_ms({case: (lambda c=case: step(*built[c], batch)) for case in cases},
                             args.warmup, args.steps, device)
    rows = []
    for case in cases:
        model, optimizer, stage = built[case]
        rows.append({"case": case, "params": sum(p.numel() for p in model.parameters()),
                     "step_ms": step_ms[case],
                     "peak_mib": peak_extra_mib(model, optimizer, stage, batch, device)})
    how = ("cuda max_memory_allocated during the step minus allocated before it" if device.type == "cuda" else
           "torch.profiler memory timeline (profile_memory): peak live tensor bytes minus the first sample")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={name} threads={args.threads} image_model={args.image_model} image={args.image_size}px "
          f"batch={args.batch} rate={args.rate} steps={args.steps} (median, interleaved) warmup={args.warmup}")
    print(f"memory: {how}")
    print_ratio_table(rows, key="case", width=24, digits=2)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": name, "memory": how, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
