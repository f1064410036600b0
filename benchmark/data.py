"""From a dataset's raw table to the batches a method sees.

This module is where leakage is made impossible by construction:
* tabular statistics are fitted on the *observed* training rows only;
* a masked modality is never read (images are not loaded, tabular rows are zeroed), so a method
  receives zeros plus a per-sample presence mask and cannot peek;
* a sample that has lost both modalities is removed from training and scored with the training
  prior at test time (by the harness, not the method).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from benchmark.masks import IMAGE, TABULAR, MissingSpec, drop_mask, mask_sha256, persist_mask
from datasets.base import BenchmarkDataset, DatasetInfo, SampleTable, TabularColumn, stratum_labels


@dataclass
class Batch:
    """What a method receives. Absent modalities are zeros; ``present`` says which is which."""

    images: dict[str, torch.Tensor]   # view -> (B, C, H, W)
    view_present: torch.Tensor        # (B, V) bool; False for every view when the image is absent
    tabular: torch.Tensor             # (B, F) float32
    labels: torch.Tensor              # (B,) int64 or (B, K) float32 for multilabel
    present: torch.Tensor             # (B, 2) bool: [:, 0] image modality, [:, 1] tabular
    ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.present.shape[0])

    @property
    def image_present(self) -> torch.Tensor:
        return self.present[:, IMAGE]

    @property
    def tabular_present(self) -> torch.Tensor:
        return self.present[:, TABULAR]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch({v: x.to(device) for v, x in self.images.items()}, self.view_present.to(device),
                     self.tabular.to(device), self.labels.to(device), self.present.to(device), self.ids)

    def with_present(self, present: torch.Tensor) -> "Batch":
        """The same batch with fewer modalities: newly absent data is zeroed (never just hidden)."""
        present = present & self.present
        images = {v: x * present[:, IMAGE].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
                  for v, x in self.images.items()}
        return Batch(images, self.view_present & present[:, IMAGE:IMAGE + 1],
                     self.tabular * present[:, TABULAR:TABULAR + 1].to(self.tabular.dtype),
                     self.labels, present, self.ids)


class TabularPreprocessor:
    """Numeric z-scoring with NaN imputation + indicator, and one-hot categoricals.

    Fitted on observed training rows only. Categorical level 0 = unknown: its one-hot is all zeros.
    """

    def __init__(self, columns: tuple[TabularColumn, ...]) -> None:
        self.columns = columns
        self.numeric_cols = [c for c in columns if c.kind == "numeric"]
        self.categorical_cols = [c for c in columns if c.kind == "categorical"]

    def fit(self, numeric: np.ndarray, categorical: np.ndarray) -> "TabularPreprocessor":
        numeric = np.asarray(numeric, dtype=np.float64).reshape(len(numeric), len(self.numeric_cols))
        with np.errstate(all="ignore"):
            mean = np.nanmean(numeric, axis=0) if len(numeric) else np.zeros(numeric.shape[1])
            std = np.nanstd(numeric, axis=0) if len(numeric) else np.ones(numeric.shape[1])
        self.mean = np.nan_to_num(mean, nan=0.0)
        self.std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.nan_indicator = np.isnan(numeric).any(axis=0) if len(numeric) else np.zeros(numeric.shape[1], bool)
        self.vocab: list[tuple[str, ...]] = []
        for j, col in enumerate(self.categorical_cols):
            if col.categories:
                self.vocab.append(tuple(col.categories))
            else:
                seen = {str(v) for v in categorical[:, j] if v is not None and v == v}
                self.vocab.append(tuple(sorted(seen)))
        names, slices = [], []
        for j, col in enumerate(self.numeric_cols):
            start = len(names)
            names.append(col.name)
            if self.nan_indicator[j]:
                names.append(f"{col.name}__isnan")
            slices.append((start, len(names)))
        for col, vocab in zip(self.categorical_cols, self.vocab):
            start = len(names)
            names += [f"{col.name}={level}" for level in vocab]
            slices.append((start, len(names)))
        self.feature_names = tuple(names)
        self.column_slices = tuple(slices)
        return self

    def transform(self, numeric: np.ndarray, categorical: np.ndarray) -> tuple[np.ndarray, int]:
        """Encoded (N, F) float32 and the number of unseen categorical values (all-zero one-hot)."""
        n = len(numeric)
        numeric = np.asarray(numeric, dtype=np.float64).reshape(n, len(self.numeric_cols))
        parts = []
        for j in range(numeric.shape[1]):
            col = numeric[:, j]
            isnan = np.isnan(col)
            parts.append(((np.where(isnan, self.mean[j], col) - self.mean[j]) / self.std[j])[:, None])
            if self.nan_indicator[j]:
                parts.append(isnan[:, None].astype(np.float64))
        unseen = 0
        for j, vocab in enumerate(self.vocab):
            index = {level: i for i, level in enumerate(vocab)}
            onehot = np.zeros((n, len(vocab)))
            for i, value in enumerate(categorical[:, j]):
                if value is None or value != value:
                    continue
                pos = index.get(str(value))
                if pos is None:
                    unseen += 1
                else:
                    onehot[i, pos] = 1.0
            parts.append(onehot)
        out = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
        return out.astype(np.float32), unseen


@dataclass
class SplitData:
    """One split after masking: everything a loader needs, images loaded lazily."""

    name: str
    rows: np.ndarray             # rows of the SampleTable
    ids: np.ndarray
    labels: np.ndarray
    tabular: np.ndarray          # (N, F) float32 encoded record (zeros where really absent)
    present: np.ndarray          # (N, 2) final availability = synthetic mask AND real
    real_present: np.ndarray     # (N, 2) real availability only (for the "full" test scenario)
    view_available: np.ndarray   # (N, V) real availability of each view
    table: SampleTable = field(repr=False)
    views: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, index: np.ndarray, train: bool = False, present: np.ndarray | None = None) -> Batch:
        """Assemble a batch of split-local indices under ``present`` (default: the split's mask).

        Absent modalities are physically removed here: images are never loaded and tabular rows
        are zeroed, so no method can peek.  ``present`` may only remove modalities that are
        really available; it never restores really missing data.
        """
        index = np.asarray(index, dtype=np.int64)
        present = self.present[index] if present is None else (np.asarray(present, bool) & self.real_present[index])
        view_present = self.view_available[index] & present[:, IMAGE:IMAGE + 1]
        images = {}
        for v, view in enumerate(self.views):
            arr = np.zeros((len(index), *self.image_shape), dtype=np.float32)
            load = np.flatnonzero(view_present[:, v])
            if len(load):
                arr[load] = self.table.images.load(self.rows[index[load]], view, train)
            images[view] = torch.from_numpy(arr)
        labels = self.labels[index]
        label_t = torch.from_numpy(np.asarray(labels, dtype=np.float32 if labels.ndim == 2 else np.int64))
        tabular = self.tabular[index] * present[:, TABULAR:TABULAR + 1]
        return Batch(images, torch.from_numpy(view_present), torch.from_numpy(tabular.astype(np.float32)),
                     label_t, torch.from_numpy(present), tuple(self.ids[index].tolist()))

    def iter_batches(self, batch_size: int, order: np.ndarray | None = None,
                     train: bool = False) -> Iterator[Batch]:
        order = np.arange(len(self)) if order is None else order
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size], train=train)


@dataclass
class PreparedData:
    """A dataset split, masked and normalised for one (missing spec, seed)."""

    info: DatasetInfo
    splits: dict[str, SplitData]
    mask_hashes: dict[str, str]
    mask_files: dict[str, Path]
    counts: dict[str, int]           # real missingness, unseen categories, both-missing samples
    train_prior: np.ndarray          # (K,) class frequencies of the training labels
    table: SampleTable


def prepare_data(dataset: BenchmarkDataset, table: SampleTable, spec: MissingSpec, seed: int,
                 mask_dir: Path | None = None) -> PreparedData:
    """Split, mask, fit normalisation on observed train rows, encode tabular features."""
    split_rows = dataset.split_indices(table, seed)
    strata = stratum_labels(table.labels, dataset.task)
    real = np.stack([table.view_available.any(axis=1), table.tabular_available], axis=1)
    present: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for split, rows in split_rows.items():
        keep = drop_mask(table.ids[rows], strata[rows], spec.rate_for(split), spec.pattern, seed,
                         dataset.registry_name, split, spec.image_share)
        hashes[split] = mask_sha256(table.ids[rows], keep)
        if mask_dir is not None:
            files[split], _ = persist_mask(mask_dir, dataset.registry_name, split, spec, seed,
                                           table.ids[rows], keep)
        present[split] = keep & real[rows]
        counts[f"{split}_real_image_missing"] = int((~real[rows, IMAGE]).sum())
        counts[f"{split}_real_tabular_missing"] = int((~real[rows, TABULAR]).sum())
        counts[f"{split}_both_missing"] = int((~present[split].any(axis=1)).sum())

    train_rows = split_rows["train"]
    observed = present["train"][:, TABULAR]
    pre = TabularPreprocessor(table.columns).fit(table.numeric[train_rows][observed],
                                                 table.categorical[train_rows][observed])
    splits: dict[str, SplitData] = {}
    image_shape: tuple[int, ...] = ()
    for split, rows in split_rows.items():
        tab, unseen = pre.transform(table.numeric[rows], table.categorical[rows])
        counts[f"{split}_unseen_categories"] = unseen
        real_rows = real[rows]
        tab[~real_rows[:, TABULAR]] = 0.0
        pres = present[split]
        if split == "train":  # samples with no modality at all cannot be trained on
            usable = pres.any(axis=1)
            rows, tab, pres, real_rows = rows[usable], tab[usable], pres[usable], real_rows[usable]
        splits[split] = SplitData(split, rows, table.ids[rows], table.labels[rows], tab, pres, real_rows,
                                  table.view_available[rows], table, tuple(dataset.views))
    image_shape = _probe_image_shape(table, dataset.views)
    for s in splits.values():
        s.image_shape = image_shape
    train_labels = table.labels[splits["train"].rows]
    if train_labels.ndim == 1:
        prior = np.bincount(train_labels.astype(np.int64), minlength=len(dataset.class_names)).astype(np.float64)
        prior = prior / max(prior.sum(), 1.0)
    else:
        prior = train_labels.mean(axis=0)
    info = DatasetInfo(
        name=dataset.registry_name, task=dataset.task, class_names=tuple(dataset.class_names),
        views=tuple(dataset.views), image_channels=image_shape[0], image_shape=tuple(image_shape[1:]),
        tabular_columns=tuple(table.columns), tabular_features=pre.feature_names,
        tabular_column_slices=pre.column_slices, primary_metric=dataset.primary_metric)
    return PreparedData(info, splits, hashes, files, counts, prior, table)


def _probe_image_shape(table: SampleTable, views: tuple[str, ...]) -> tuple[int, ...]:
    """(C, H, W) of the preprocessed images, from the first row that has any view."""
    for v, view in enumerate(views):
        rows = np.flatnonzero(table.view_available[:, v])
        if len(rows):
            return tuple(table.images.load(rows[:1], view, False).shape[1:])
    shape = table.extras.get("image_shape")
    if shape is None:
        raise ValueError("no image is available in any row and the dataset declares no image_shape")
    return tuple(shape)
