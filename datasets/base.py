"""The dataset contract (datasets spec section 1).

A dataset is mostly declarative metadata (task, classes, views, primary metric, source, expected
files) plus one method, :meth:`BenchmarkDataset.load_table`, that reads the user's files into a
:class:`SampleTable` of *raw* values.  Everything that must be identical across datasets —
splitting, train-only normalisation, masking, batching — is owned by the base class and the
core (``core.batch``, ``core.masks``) and ``datasets.preparation``, so a new dataset is one short file.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.batch import PreparedData
from core.contract import SPLITS, Oracle, SampleTable, TaskType
from core.errors import DatasetLayoutError
from core.masks import MissingSpec, id_uniforms, stratum_labels
from core.options import from_mapping
from datasets.preparation import prepare_data


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

    # -- splitting + masking + normalisation for one cell group --------------------------------
    def prepare(self, table: SampleTable, spec: MissingSpec, seed: int, mask_dir: Path | None = None) -> PreparedData:
        """Split, mask (persisting the masks under ``mask_dir``), fit normalisation on observed train rows."""
        return prepare_data(self, table, spec, seed, mask_dir)


def stratified_split(ids: np.ndarray, strata: np.ndarray, seed: int,
                     fractions: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Seeded, id-keyed stratified split: within each stratum, rank by a hash of (seed, id)."""
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
