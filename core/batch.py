"""What a method receives (:class:`Batch`) and the masked, normalised splits batches come from.

Leakage is impossible by construction here: a masked modality is never read (images are not
loaded, tabular rows are zeroed), so a method receives zeros plus a per-sample presence mask and
cannot peek.  Splitting, masking and normalisation happen once, in ``datasets.preparation``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from core.contract import DatasetInfo, SampleTable
from core.masks import IMAGE, TABULAR


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

    def to(self, device: torch.device | str, channels_last: bool = False, non_blocking: bool = False) -> "Batch":
        """The batch on ``device``; ``channels_last`` stores 4-D images NHWC in memory (same values)."""
        def move(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device, non_blocking=non_blocking)
            return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x

        return Batch({v: move(x) for v, x in self.images.items()}, move(self.view_present),
                     move(self.tabular), move(self.labels), move(self.present), self.ids)

    def pin_memory(self) -> "Batch":
        """The batch in page-locked host memory (what a DataLoader with ``pin_memory`` calls), so
        ``to(cuda, non_blocking=True)`` overlaps the copy with compute."""
        return Batch({v: x.pin_memory() for v, x in self.images.items()}, self.view_present.pin_memory(),
                     self.tabular.pin_memory(), self.labels.pin_memory(), self.present.pin_memory(), self.ids)

    def without_labels(self) -> "Batch":
        """The same batch with the labels zeroed: what prediction gets, so no method can read the
        answer of the samples it is scored on."""
        return Batch(self.images, self.view_present, self.tabular, torch.zeros_like(self.labels), self.present,
                     self.ids)

    def with_present(self, present: torch.Tensor) -> "Batch":
        """The same batch with fewer modalities: newly absent data is zeroed (never just hidden)."""
        present = present & self.present
        images = {v: x * present[:, IMAGE].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
                  for v, x in self.images.items()}
        return Batch(images, self.view_present & present[:, IMAGE:IMAGE + 1],
                     self.tabular * present[:, TABULAR:TABULAR + 1].to(self.tabular.dtype),
                     self.labels, present, self.ids)


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
