"""Epoch time of the real-image pipeline with and without the decoded-image cache.

Usage::

    python benchmarks/bench_image_cache.py [--images 200] [--source-size 768 512] [--image-size 224]
        [--epochs 3] [--batch 32] [--augment] [--json out.json]

What is measured: a fabricated ``csv_manifest`` folder of ``--images`` JPEGs (random smooth
noise, ``--source-size`` W H, quality 90, i.e. photo-sized files like Derm7pt's) is loaded through
the dataset's ``ImageSource`` exactly as a training epoch does (``SplitData.batch`` on shuffled
batches of ``--batch``), for ``--epochs`` epochs, in four settings:

* ``none``: no cache -- every epoch decodes and resizes every JPEG again;
* ``memory``: the in-process LRU -- ``load_table`` (``verify_images``) decodes once, epochs read
  the resized uint8 arrays;
* ``disk (cold)``: as memory, plus the ``.npy`` files are written;
* ``disk (warm)``: a new process's view (the memory cache cleared): ``load_table`` reads the
  ``.npy`` files instead of decoding -- what every later run of a grid sees.

Reported per setting: ``load_table`` seconds (it includes the verification decode) and the
median epoch seconds.  One CPU thread for torch; decoding uses ``--workers`` threads (default 1,
so the numbers compare per core).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def fabricate(root: Path, n: int, size: tuple[int, int]) -> Path:
    from PIL import Image, ImageFilter

    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        noise = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(noise).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        img.save(images / f"img_{i:04d}.jpg", quality=90)
        split = "test" if i >= n - max(1, n // 10) else "train"
        rows.append(f"c{i:04d},img_{i:04d}.jpg,{40 + i % 30},{'F' if i % 2 else 'M'},{i % 2},{split}")
    (root / "cases.csv").write_text("id,path,age,sex,label,split\n" + "\n".join(rows) + "\n")
    (root / "manifest.yaml").write_text(
        "manifest: cases.csv\nimage_root: images\nid_column: id\ntask: binary\nlabel_columns: [label]\n"
        "views: {main: path}\nnumeric: [age]\ncategorical: [sex]\nsplit_column: split\n")
    return root


def run_setting(root: Path, cache: str, cache_dir: Path, args: argparse.Namespace,
                clear_memory: bool = True) -> dict[str, float]:
    from core.masks import MissingSpec
    from datasets import create_dataset
    from datasets.imaging import CACHE
    from datasets.preparation import prepare_data

    if clear_memory:
        CACHE.clear()
    ds = create_dataset("csv_manifest", str(root), image_size=args.image_size, cache=cache,
                        cache_dir=str(cache_dir), augment=args.augment, workers=args.workers, val_fraction=0.0)
    t0 = time.perf_counter()
    table = ds.load_table()
    load_s = time.perf_counter() - t0
    data = prepare_data(ds, table, MissingSpec("mixed", 0.0), seed=0)
    train = data.splits["train"]
    rng = np.random.default_rng(0)
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        for start in range(0, len(order), args.batch):
            train.batch(order[start:start + args.batch], train=True)
        epochs.append(time.perf_counter() - t0)
    return {"load_table_s": round(load_s, 3), "epoch_s_median": round(statistics.median(epochs), 3),
            "epoch_s": [round(e, 3) for e in epochs], "decodes": CACHE.misses, "disk_hits": CACHE.disk_hits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--source-size", type=int, nargs=2, default=(768, 512))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = fabricate(Path(tmp) / "data", args.images, tuple(args.source_size))
        cache_dir = Path(tmp) / "cache"
        results["none"] = run_setting(root, "none", cache_dir, args)
        results["memory"] = run_setting(root, "memory", cache_dir, args)
        results["disk (cold)"] = run_setting(root, "disk", cache_dir, args)
        results["disk (warm)"] = run_setting(root, "disk", cache_dir, args)
    print(f"{args.images} JPEGs {args.source_size[0]}x{args.source_size[1]} -> {args.image_size} px, "
          f"batch {args.batch}, augment={args.augment}, {args.epochs} epochs")
    print(f"{'setting':<12} {'load_table s':>12} {'epoch s (median)':>17} {'decodes':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['load_table_s']:>12.2f} {r['epoch_s_median']:>17.3f} {r['decodes']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
