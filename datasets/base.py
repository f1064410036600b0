"""The dataset contract (datasets spec section 1).

A dataset is mostly declarative metadata (task, classes, views, primary metric, source, expected
files) plus one method, :meth:`BenchmarkDataset.load_table`, that reads the user's files into a
:class:`SampleTable` of *raw* values.  Everything that must be identical across datasets —
splitting, train-only normalisation, masking, batching — is owned by the base class and the
core (``core.batch``, ``core.masks``) and ``datasets.preparation``, so a new dataset is one short file.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from core.batch import PreparedData
from core.contract import SPLITS, Oracle, SampleTable, TaskType
from core.errors import DatasetLayoutError
from core.masks import MissingSpec, stratum_labels
from core.options import from_mapping
from datasets.content import folder_digest
from datasets.imaging import RasterImageOptions
from datasets.preparation import prepare_data
from datasets.splitting import check_group_split, seeded_split, stratified_split

__all__ = ["BenchmarkDataset", "NoOptions", "quiet_logs", "seeded_split", "stratified_split"]


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
        """What identifies this dataset's *content* in a run's identity: name, options and, for file
        datasets, the bytes of the label/manifest files and a listing of every other file under the
        root with its size and modification time (so a changed label, a new release or another
        ``--data-root`` is a new run; the root's path itself is not, so moving the folder is not)."""
        out: dict[str, Any] = {"name": self.registry_name, "options": dataclasses.asdict(self.options)}
        if self.needs_data_root and self.root is not None:
            out["files"] = folder_digest(self.root)
        return out

    @property
    def seed_dependent_table(self) -> bool:
        """True when the table itself changes with the run seed (see :meth:`table_for_seed`)."""
        return False

    def table_for_seed(self, run_seed: int) -> SampleTable:
        """The table a run of ``run_seed`` uses: the same for every seed unless the dataset draws its
        data from the run seed (the synthetic dataset with ``seed: run``)."""
        return self.load_table()

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

    # -- fail fast (``create_dataset`` calls this before any grid is built) ---------------------
    def check_layout(self) -> None:
        """Stop on a layout mistake before the grid, not in every cell of it.

        A file dataset reads its table once with every path resolved but nothing decoded
        (``verify_images`` off, its log quiet): a missing file or column, or a view that resolves
        for fewer rows than ``min_image_share``, raises :class:`DatasetLayoutError` here, in the
        process that builds the grid.  Datasets without files (synthetic) have nothing to check.
        """
        if not isinstance(self.options, RasterImageOptions):
            return
        options = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)}
        probe = type(self)(self.root, **{**options, "verify_images": False})
        with quiet_logs():
            probe.load_table()

    # -- splitting (owned here so every dataset splits the same way) --------------------------
    def split_indices(self, table: SampleTable, seed: int) -> dict[str, np.ndarray]:
        """Official split when the table has one; else a seeded stratified 70/10/20 split.

        With groups (``table.groups``: patient, lesion) the seeded split assigns whole groups
        (:func:`datasets.splitting.grouped_split`) and an official split must not put one group
        in two splits.  Without groups the split is the per-sample one, unchanged.
        """
        if table.split is not None:
            out = {s: np.flatnonzero(table.split == s) for s in SPLITS}
            empty = [s for s, idx in out.items() if len(idx) == 0 and s != "val"]
            if empty:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': official split has no '{empty[0]}' rows")
            check_group_split(self.registry_name, table.groups, out, "the official split")
            return out
        return seeded_split(table.ids, stratum_labels(table.labels, self.task), seed, self.split_fractions,
                            table.groups)

    # -- splitting + masking + normalisation for one cell group --------------------------------
    def prepare(self, table: SampleTable, spec: MissingSpec, seed: int, mask_dir: Path | None = None) -> PreparedData:
        """Split, mask (persisting the masks under ``mask_dir``), fit normalisation on observed train rows."""
        return prepare_data(self, table, spec, seed, mask_dir)


@contextmanager
def quiet_logs(name: str = "datasets") -> Iterator[None]:
    """Only errors from the ``datasets`` loggers while a probe reads a table (its warnings come again
    when the table is really loaded)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
