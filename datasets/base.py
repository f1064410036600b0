"""The dataset contract (datasets spec section 1).

A dataset is mostly declarative metadata (task, classes, views, primary metric, source, expected
files) plus one method, :meth:`BenchmarkDataset.load_table`, that reads the user's files into a
:class:`SampleTable` of *raw* values.  Everything that must be identical across datasets —
splitting, train-only normalisation, masking, batching — is owned by the base class and the
harness (``benchmark.data``), so a new dataset is one short file.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from benchmark.errors import DatasetLayoutError
from benchmark.options import from_mapping

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

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise DatasetLayoutError("sample ids are not unique")
        for name in ("labels", "numeric", "categorical", "view_available", "tabular_available"):
            if len(getattr(self, name)) != n:
                raise DatasetLayoutError(f"SampleTable.{name} has {len(getattr(self, name))} rows, ids {n}")


@dataclass(frozen=True)
class NoOptions:
    """For datasets without options."""


class BenchmarkDataset:
    """Base class: metadata as class attributes, ``load_table`` reads files.

    Subclasses set the class attributes below and an ``Options`` dataclass; the base class
    validates options once and resolves the data root (``--data-root`` or
    ``$MEDFUSION_DATA/<name>``).
    """

    registry_name: ClassVar[str]
    display_name: ClassVar[str] = ""
    task: ClassVar[TaskType] = "binary"
    class_names: ClassVar[tuple[str, ...]] = ()
    views: ClassVar[tuple[str, ...]] = ("image",)
    primary_metric: ClassVar[str] = "auc"
    source_url: ClassVar[str] = ""
    expected_files: ClassVar[tuple[str, ...]] = ()
    needs_data_root: ClassVar[bool] = True
    split_fractions: ClassVar[tuple[float, float, float]] = (0.7, 0.1, 0.2)
    Options: ClassVar[type] = NoOptions

    def __init__(self, root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        self.options = from_mapping(self.Options, options, f"dataset '{self.registry_name}' options")
        self.root = self._resolve_root(root) if self.needs_data_root else (Path(root) if root else None)

    # -- identity ---------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What identifies this dataset's content in a RunSpec (name + options)."""
        return {"name": self.registry_name, "options": dataclasses.asdict(self.options)}

    def _resolve_root(self, root: str | os.PathLike[str] | None) -> Path:
        if root is None:
            base = os.environ.get("MEDFUSION_DATA")
            if not base:
                raise DatasetLayoutError(
                    f"dataset '{self.registry_name}': no data root; pass --data-root or set "
                    f"MEDFUSION_DATA (looked for $MEDFUSION_DATA/{self.registry_name}, MEDFUSION_DATA is unset). "
                    f"Expected: {', '.join(self.expected_files) or 'see README'}. "
                    f"Download: {self.source_url or 'see README'}")
            root = Path(base) / self.registry_name
        path = Path(root)
        if not path.is_dir():
            raise DatasetLayoutError(
                f"dataset '{self.registry_name}': data root {path} does not exist. Expected: "
                f"{', '.join(self.expected_files) or 'see README'}. Download: {self.source_url or 'see README'}")
        return path

    # -- the one thing a dataset must implement ---------------------------------------------
    def load_table(self) -> SampleTable:
        raise NotImplementedError

    # -- optional ground truth ----------------------------------------------------------------
    def oracle(self) -> "Oracle | None":
        """Datasets with a known generative model return an oracle (synthetic); others None."""
        return None

    # -- splitting (owned here so every dataset splits the same way) --------------------------
    def split_indices(self, table: SampleTable, seed: int) -> dict[str, np.ndarray]:
        """Official split when the table has one; else a seeded stratified 70/10/20 split."""
        if table.split is not None:
            out = {s: np.flatnonzero(table.split == s) for s in SPLITS}
            empty = [s for s, idx in out.items() if len(idx) == 0 and s != "val"]
            if empty:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': official split has no '{empty[0]}' rows")
            return out
        return stratified_split(table.ids, stratum_labels(table.labels, self.task), seed, self.split_fractions)


class Oracle(Protocol):
    """Bayes-optimal reference for datasets with a known generative model."""

    def scores(self, table: SampleTable, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Bayes posterior scores (N, K) using only the modalities in ``present`` (N, 2)."""

    def population_auc(self, pattern: str, rate: float, seed: int) -> float:
        """Bayes AUC of the population under a missing pattern and rate (closed form or MC)."""


def stratum_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Stratum per sample: the class; for multilabel the least frequent positive label or 'none'."""
    if labels.ndim == 1:
        return np.asarray([str(int(v)) for v in labels])
    freq = labels.sum(axis=0)
    out = []
    for row in labels:
        pos = np.flatnonzero(row > 0.5)
        out.append("none" if len(pos) == 0 else str(int(pos[np.argmin(freq[pos])])))
    return np.asarray(out)


def stratified_split(ids: np.ndarray, strata: np.ndarray, seed: int,
                     fractions: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Seeded, id-keyed stratified split: within each stratum, rank by a hash of (seed, id)."""
    from benchmark.masks import id_uniforms  # the same id-keyed draw as the masks

    u = id_uniforms(ids, seed=seed, namespace="split", split="all")[:, 0]
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for stratum in sorted(set(strata.tolist())):
        rows = np.flatnonzero(strata == stratum)
        rows = rows[np.argsort(u[rows], kind="stable")]
        n = len(rows)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        out["train"] += rows[:n_train].tolist()
        out["val"] += rows[n_train:n_train + n_val].tolist()
        out["test"] += rows[n_train + n_val:].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in out.items()}
