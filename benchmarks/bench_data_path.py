"""Does the data path keep up with the encoder?  Images/s of the data path against the encoder's
forward+backward images/s on the same device, printed as a ratio (>= 2: data is never the bottleneck).

Usage::

    python benchmarks/bench_data_path.py [--device cpu|cuda] [--threads 1,0] [--workers 0,2]
        [--images 256] [--source-size 768 512] [--image-size 224] [--batch 64] [--model resnet18]
        [--precision fp32,bf16] [--steps 3] [--warmup 1] [--data-batches 12] [--no-synthetic] [--json out.json]

Two cases:

* ``real``: a fabricated ``csv_manifest`` folder of ``--images`` JPEGs (``--source-size``, as
  ``bench_image_cache.py`` makes them), loaded with the memory cache and augmentation on; the
  cache is warm (``load_table`` decodes every file once, as a real run does) so what is measured
  is the per-epoch data path: ``SplitData.batch(index, train=True)`` -- cached uint8 -> float,
  flips/rotation/brightness/contrast, ImageNet normalisation -- and ``Batch.to(device)``.
  Against ``--model`` (default resnet18, 3 channels) at ``--image-size``, batch ``--batch``.
* ``synthetic`` (the CPU default grid): the synthetic dataset's 32-px images against the default
  encoder ``test_efficientnet``.

Data path, per ``--workers`` value: ``0`` = in the training process (what the loop does), ``N`` =
a ``torch.utils.data.DataLoader`` with N worker processes, prefetch 4 and pinned memory on CUDA
(a measurement of what workers would give; their augmentation draws are not the loop's).  Encoder:
median wall time of a full step (forward, cross-entropy, backward, AdamW) over ``--steps`` steps
after ``--warmup``, CUDA synchronised, once per ``--precision`` value (comma-separated; bf16 and
fp16 autocast it and use channels_last for CNNs on CUDA, as ``training.precision`` does).  Per ``--threads`` value (``0`` =
torch's default) both are measured in this process, one after the other.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from bench_image_cache import fabricate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BatchSet(torch.utils.data.Dataset):
    """Item i = the i-th batch of a fixed shuffled order (so workers build whole batches)."""

    def __init__(self, split, batches: list[np.ndarray]) -> None:
        self.split, self.batches = split, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.split.batch(self.batches[i], train=True)


def data_images_per_s(split, batch: int, n_batches: int, device: torch.device, workers: int) -> float:
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(len(split)) for _ in range(-(-n_batches * batch // len(split)) + 1)])
    batches = [order[i * batch:(i + 1) * batch] for i in range(n_batches + 1)]
    pin = device.type == "cuda"
    if workers == 0:
        split.batch(batches[0], train=True).to(device)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for index in batches[1:]:
            split.batch(index, train=True).to(device, non_blocking=False)
        sync(device)
        return n_batches * batch / (time.perf_counter() - t0)
    loader = torch.utils.data.DataLoader(BatchSet(split, batches), batch_size=None, num_workers=workers,
                                         pin_memory=pin, prefetch_factor=4, persistent_workers=False)
    it = iter(loader)
    next(it).to(device, non_blocking=pin)  # workers started, first batch out
    sync(device)
    t0 = time.perf_counter()
    for b in it:
        b.to(device, non_blocking=pin)
    sync(device)
    return n_batches * batch / (time.perf_counter() - t0)


def model_images_per_s(model_name: str, in_chans: int, size: int, batch: int, device: torch.device,
                       precision: str, steps: int, warmup: int) -> float:
    import timm

    from benchmark.training.precision import Precision

    torch.manual_seed(0)
    model = torch.nn.Sequential(timm.create_model(model_name, num_classes=0, in_chans=in_chans),
                                torch.nn.LazyLinear(2)).to(device)
    prec = Precision.for_run(precision, device, model)
    x = torch.randn(batch, in_chans, size, size, device=device)
    if prec.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)
    with torch.no_grad():
        model(x)  # materialise the lazy head
    prec.prepare(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = prec.scaler()
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with prec.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def real_split(root: Path, image_size: int):
    from core.masks import MissingSpec
    from datasets import create_dataset
    from datasets.preparation import prepare_data

    ds = create_dataset("csv_manifest", str(root), image_size=image_size, cache="memory", augment=True,
                        val_fraction=0.0)
    table = ds.load_table()  # verify_images: decodes every file once -> the cache is warm
    return prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0).splits["train"]


def synthetic_split():
    from core.masks import MissingSpec
    from datasets import create_dataset
    from datasets.preparation import prepare_data

    ds = create_dataset("synthetic", sigma_pix=0.1)
    return prepare_data(ds, ds.load_table(), MissingSpec("mixed", 0.0), seed=0).splits["train"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", default="1,0", help="comma-separated torch thread counts (0 = default)")
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts (0 = in-process)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--source-size", type=int, nargs=2, default=(768, 512))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, fp16")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--data-batches", type=int, default=12)
    p.add_argument("--no-synthetic", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()
    device = torch.device(args.device)
    default_threads = torch.get_num_threads()
    threads = [int(t) or default_threads for t in args.threads.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = fabricate(Path(tmp) / "data", args.images, tuple(args.source_size))
        cases = [("real", real_split(root, args.image_size), args.model, args.image_size, 3)]
        if not args.no_synthetic:
            cases.append(("synthetic", synthetic_split(), "test_efficientnet", 32, 1))
        for t in threads:
            torch.set_num_threads(t)
            for case, split, model, size, chans in cases:
                model_ips = {prec: model_images_per_s(model, chans, size, args.batch, device, prec, args.steps,
                                                      args.warmup) for prec in args.precision.split(",")}
                for w in workers:
                    data_ips = data_images_per_s(split, args.batch, args.data_batches, device, w)
                    for prec, ips in model_ips.items():
                        rows.append({"case": case, "model": model, "image_size": size, "batch": args.batch,
                                     "threads": t, "workers": w, "device": str(device), "precision": prec,
                                     "data_images_per_s": round(data_ips, 1), "model_images_per_s": round(ips, 2),
                                     "ratio": round(data_ips / ips, 2)})
                        r = rows[-1]
                        print(f"{case:<9} {model:<18} {size:>4}px batch {args.batch} threads {t} workers {w}: "
                              f"data {r['data_images_per_s']:>9.1f} img/s, {prec} fwd+bwd "
                              f"{r['model_images_per_s']:>8.2f} img/s, ratio {r['ratio']:>7.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
