"""The data contract between datasets, the harness and methods.

A dataset reads its files into a :class:`SampleTable` of raw values; a method only ever sees a
:class:`DatasetInfo` (shapes and schema, never masks or labels) and batches.  These types live in
the core so that ``datasets/`` and ``methods/`` depend on them without depending on each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from core.errors import DatasetLayoutError

TaskType = Literal["binary", "multiclass", "multilabel"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TabularColumn:
    """One raw tabular column. Categorical levels are 1-based; 0 means unknown/unseen."""

    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()  # fixed order when declared; else fitted on train


@dataclass(frozen=True)
class DatasetInfo:
    """What a method may know about a dataset: shapes and schema, never the masks or labels."""

    name: str
    task: TaskType
    class_names: tuple[str, ...]
    views: tuple[str, ...]
    image_channels: int
    image_shape: tuple[int, ...]          # (H, W) for 2-D views
    tabular_columns: tuple[TabularColumn, ...]
    tabular_features: tuple[str, ...]     # names of the encoded feature vector's entries
    tabular_column_slices: tuple[tuple[int, int], ...]  # encoded [start, stop) per raw column
    primary_metric: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def tabular_dim(self) -> int:
        return len(self.tabular_features)

    @property
    def num_views(self) -> int:
        return len(self.views)


class ImageSource(Protocol):
    """Gives preprocessed images. It is only ever asked for views that are present."""

    def load(self, rows: np.ndarray, view: str, train: bool) -> np.ndarray:
        """float32 array (len(rows), C, H, W) for the given table rows of one view."""


@dataclass
class ArrayImageSource:
    """In-memory images: ``arrays[view]`` is (N, C, H, W) float32 for every table row."""

    arrays: dict[str, np.ndarray]

    def load(self, rows: np.ndarray, view: str, train: bool) -> np.ndarray:
        return self.arrays[view][rows]


@dataclass
class SampleTable:
    """Raw rows of a dataset, before splitting, masking and normalisation."""

    ids: np.ndarray                    # (N,) str, stable across runs
    labels: np.ndarray                 # (N,) int64, or (N, K) float32 for multilabel
    numeric: np.ndarray                # (N, d_num) float64, NaN = missing value
    categorical: np.ndarray            # (N, d_cat) object (str or None)
    columns: tuple[TabularColumn, ...]  # numeric columns first, then categorical, in order
    images: ImageSource
    view_available: np.ndarray         # (N, V) bool, real availability of each view
    tabular_available: np.ndarray      # (N,) bool, real availability of the tabular record
    split: np.ndarray | None = None    # (N,) str in SPLITS for official splits, else None
    extras: dict[str, Any] = field(default_factory=dict)  # dataset-specific (oracle statistics)
    groups: np.ndarray | None = None   # (N,) str: the patient/lesion of each row; no group spans two splits

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise DatasetLayoutError("sample ids are not unique")
        for name in ("labels", "numeric", "categorical", "view_available", "tabular_available"):
            if len(getattr(self, name)) != n:
                raise DatasetLayoutError(f"SampleTable.{name} has {len(getattr(self, name))} rows, ids {n}")
        if self.groups is not None:
            self.groups = np.asarray(self.groups).astype(str)
            if self.groups.shape != (n,):
                raise DatasetLayoutError(f"SampleTable.groups has shape {self.groups.shape}, expected ({n},)")
            empty = np.flatnonzero(np.char.strip(self.groups) == "")
            if len(empty):
                raise DatasetLayoutError(f"SampleTable.groups: sample '{self.ids[empty[0]]}' has an empty group")


class Oracle(Protocol):
    """Bayes-optimal reference for datasets with a known generative model."""

    def scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray,
               pattern_log_odds: Any = None) -> np.ndarray:
        """Bayes posterior scores (N, K) using only the modalities in ``present`` (N, 2); with
        ``pattern_log_odds`` ({"both"|"image"|"tabular": log p(pattern|y=1)/p(pattern|y=0)}) the
        label-dependent (mnar) pattern term is added."""

    def ceiling_scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray,
                       pattern_log_odds: Any = None) -> np.ndarray:
        """The independent-evidence ceiling: the sum of the present modalities' marginal LLRs."""

    def population_auc(self, pattern: str, rate: float, seed: int = ..., image_share: float = 0.5,
                       mechanism: str = "mcar", strength: float = 1.0) -> float:
        """Bayes AUC of the population under a missing pattern and rate (closed form or MC);
        ``population_ceiling_auc`` (same arguments) is the ceiling's."""
