"""The dataset contract checks, run over the whole dataset registry on fabricated folders.

Every registered dataset must have a fixture in :data:`DATASET_FIXTURES` (a test fails for a
dataset without one), so the checks cover a new dataset the moment it is registered:

* the table honours the contract (unique ids, one row per sample in every array, real
  availability flags, an image for some row or a declared shape);
* masks are exact in total, never drop both modalities, are nested across rates and identical
  for every call (so every method of a cell sees the same masks);
* late fusion trains one epoch through the shared loop and predicts finite probabilities;
* a table with groups (patient, lesion) never has one group in two splits, for several seeds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from benchmark.checks.fixtures import (build_csv_manifest, build_derm7pt, build_ham10000, build_men, build_odir_a,
                                       build_odir_b, build_odir_c, build_pad_ufes20)
from benchmark.checks.methods import TINY_SYNTHETIC, tiny_encoders
from benchmark.config.schema import TrainingConfig
from benchmark.training.device import seed_everything
from benchmark.training.loop import predict, train_method
from core.masks import MissingSpec
from datasets import create_dataset
from datasets.base import BenchmarkDataset
from methods import create_method

SMALL_IMAGES = {"image_size": 32, "cache": "memory"}
NPY_VIEWS = {"t1": "t1_bbox.npy", "t2": "t2_bbox.npy", "adc": "adc_bbox.npy"}
Fixture = Callable[[Path], dict[str, BenchmarkDataset]]


def fixture_derm7pt(tmp: Path) -> dict[str, BenchmarkDataset]:
    build_derm7pt(tmp / "derm")
    return {"derm7pt": create_dataset("derm7pt", str(tmp / "derm"), **SMALL_IMAGES)}


def fixture_odir(tmp: Path) -> dict[str, BenchmarkDataset]:
    splits = str(tmp / "splits")
    return {"odir-A": create_dataset("odir", str(build_odir_a(tmp / "a")), splits_dir=splits, **SMALL_IMAGES),
            "odir-B": create_dataset("odir", str(build_odir_b(tmp / "b")), splits_dir=splits, **SMALL_IMAGES),
            "odir-C": create_dataset("odir", str(build_odir_c(tmp / "c")), **SMALL_IMAGES)}


def fixture_men(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {"men": create_dataset("men", str(build_men(tmp / "men")), views=NPY_VIEWS, resize=[4, 32, 32],
                                  **SMALL_IMAGES)}


def fixture_folder_manifest(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {"folder_manifest": create_dataset(
        "folder_manifest", str(build_men(tmp / "folder")), views=NPY_VIEWS, fold=1, clinical_csv="clinical.csv",
        id_column="id", numeric=["age", "adc"], categorical=["location", "sex"], resize=[4, 32, 32],
        **SMALL_IMAGES)}


def fixture_csv_manifest(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {"csv": create_dataset("csv_manifest", str(build_csv_manifest(tmp / "csv")), **SMALL_IMAGES),
            "csv-multilabel": create_dataset("csv_manifest", str(build_csv_manifest(tmp / "csv-ml", True)),
                                             **SMALL_IMAGES)}


def fixture_ham10000(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {f"ham10000-{layout}": create_dataset("ham10000", str(build_ham10000(tmp / layout, layout)), **SMALL_IMAGES)
            for layout in ("dataverse", "isic2018")}


def fixture_pad_ufes20(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {"pad_ufes20": create_dataset("pad_ufes20", str(build_pad_ufes20(tmp / "pad")), **SMALL_IMAGES),
            "pad_ufes20-cancer-flat": create_dataset("pad_ufes20", str(build_pad_ufes20(tmp / "pad-flat", "flat")),
                                                     task="cancer", **SMALL_IMAGES)}


def fixture_synthetic(tmp: Path) -> dict[str, BenchmarkDataset]:
    return {"synthetic": create_dataset("synthetic", **{**TINY_SYNTHETIC, "cache_dir": str(tmp / "cache")})}


DATASET_FIXTURES: dict[str, Fixture] = {
    "derm7pt": fixture_derm7pt, "odir": fixture_odir, "men": fixture_men, "folder_manifest": fixture_folder_manifest,
    "csv_manifest": fixture_csv_manifest, "synthetic": fixture_synthetic, "ham10000": fixture_ham10000,
    "pad_ufes20": fixture_pad_ufes20}


def check_table_contract(label: str, ds: BenchmarkDataset, tmp: Path) -> None:
    table = ds.load_table()
    n = len(table.ids)
    assert n > 0 and len(set(table.ids.tolist())) == n, f"{label}: ids must be unique"
    assert table.view_available.shape == (n, len(ds.views)), f"{label}: view_available shape"
    assert table.tabular_available.shape == (n,), f"{label}: tabular_available shape"
    assert len(table.columns) == table.numeric.shape[1] + table.categorical.shape[1], f"{label}: column schema"
    assert table.view_available.any() or table.extras.get("image_shape"), f"{label}: no image in any row"
    parts = ds.split_indices(table, seed=0)
    rows = np.concatenate([parts[s] for s in ("train", "val", "test")])
    assert len(rows) == len(set(rows.tolist())), f"{label}: a row is in two splits"


def read_mask(path: Path) -> dict[str, tuple[int, int]]:
    frame = pd.read_csv(path, dtype=str)
    return {r.id: (int(r.image), int(r.tabular)) for r in frame.itertuples()}


def check_masks_exact_nested_and_shared(label: str, ds: BenchmarkDataset, tmp: Path) -> None:
    table = ds.load_table()
    dropped_at: dict[tuple[str, float], set[str]] = {}
    for rate in (0.3, 0.6):
        spec = MissingSpec("mixed", rate)
        data = ds.prepare(table, spec, seed=2, mask_dir=tmp / "masks" / label)
        assert ds.prepare(table, spec, seed=2).mask_hashes == data.mask_hashes, f"{label}: masks differ per call"
        for split, path in data.mask_files.items():
            mask = read_mask(path)
            dropped = {i for i, (img, tab) in mask.items() if not (img and tab)}
            assert len(dropped) == int(np.floor(rate * len(mask) + 0.5)), (label, split, rate)
            assert all(img or tab for img, tab in mask.values()), f"{label}: a sample lost both modalities"
            dropped_at[(split, rate)] = dropped
    for split in ("train", "val", "test"):
        if (split, 0.3) in dropped_at:
            assert dropped_at[(split, 0.3)] <= dropped_at[(split, 0.6)], f"{label}: masks not nested ({split})"


def check_trains_one_epoch(label: str, ds: BenchmarkDataset, tmp: Path) -> None:
    data = ds.prepare(ds.load_table(), MissingSpec("mixed", 0.3), seed=0)
    seed_everything(0)
    method = create_method("late_fusion", data.info, tiny_encoders())
    result = train_method(method, data, TrainingConfig(max_epochs=1, batch_size=64, device="cpu"), seed=0)
    assert np.isfinite(result.history[0]["train_loss"]), f"{label}: non-finite loss"
    test = data.splits["test"]
    probs = predict(method, test, data.train_prior, torch.device("cpu"), 64)
    assert probs.shape == (len(test), data.info.num_classes) and np.isfinite(probs).all(), label


def check_groups_never_span_splits(label: str, ds: BenchmarkDataset, tmp: Path) -> None:
    """With groups (patient, lesion), every split of several seeds keeps each group in one split."""
    table = ds.load_table()
    if table.groups is None:
        return
    for seed in range(4):
        parts = ds.split_indices(table, seed=seed)
        owner = {}
        for split, rows in parts.items():
            for group in set(table.groups[rows].tolist()):
                assert owner.setdefault(group, split) == split, (
                    f"{label}: seed {seed} puts group {group!r} in '{owner[group]}' and '{split}'")
        assert len(parts["train"]) and len(parts["test"]), f"{label}: seed {seed} leaves train or test empty"


DATASET_CHECKS = (check_table_contract, check_masks_exact_nested_and_shared, check_trains_one_epoch,
                  check_groups_never_span_splits)


def check_dataset(name: str, tmp: Path) -> None:
    """Every dataset check on every fixture of a registered dataset."""
    for label, ds in DATASET_FIXTURES[name](tmp).items():
        for check in DATASET_CHECKS:
            check(label, ds, tmp)
