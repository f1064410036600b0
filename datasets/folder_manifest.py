"""Image folders + clinical CSV (datasets spec section 4); also the MEN preset (``men``).

Two modes:

1. ``mode: scan`` walks ``<root>/[<fold_dir>/]<split>/<class>/<id>/<view files>``; ``split`` is
   ``train``, ``test`` and optionally ``val``.  ``views`` maps each view to a filename pattern
   (``t1: t1_bbox.nii.gz``; shell wildcards, case-insensitive; two matches are an error).  A view
   without a matching file is real missingness.  Samples join ``clinical_csv`` on ``id_column``
   (a header name, or a 0-based position when the headers are unknown, as for MEN): extra CSV rows
   are ignored, a sample without a CSV row has no tabular record (``avail.tabular = False``).
   ``numeric`` / ``categorical`` are lists of header names, or mappings name -> header or position.
2. ``mode: manifest`` reads an explicit CSV exactly as ``csv_manifest`` (section 5).

Validation (ours): without a ``val`` folder, a seeded stratified ``val_fraction`` (15 %) of the
fold's ``train`` -- never the test fold (CFCML selected on test; we do not).

3-D volumes are preprocessed by ``clip``, ``zscore`` and ``resize: [D, H, W]`` and then fed to the
shared 2-D timm encoder as **D-channel images** ("slices as channels", identical for every
method), so ``DatasetInfo.image_channels == D``.  1-D ``.npy`` files are precomputed embeddings.

MEN (``men``, private, Tianjin Huanhu Hospital): 3 classes ``Grade_1``, ``Grade_2_invasion``,
``Grade_2_noninvasion``; ``{1,2,3}fold/{train,test}/<class>/<patient>/{t1,t2,adc}_bbox.nii.gz``;
volumes clipped to [0, 1200], z-scored over voxels > 0, resized to 24 x 128 x 128.  The clinical
CSV has a header row, the id in column 0 and columns 4..9 = location {1,2,3}, sex {0,1}, age, ADC
value, tumour area, edema area; its file name and column names are (unknown): options.
"""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.contract import SPLITS, SampleTable, TabularColumn
from core.errors import ConfigError, DatasetLayoutError
from datasets import register_dataset
from datasets.base import BenchmarkDataset
from datasets.csv_manifest import (CsvManifestOptions, cat_text, check_ids, load_spec, manifest_table, num_value,
                                   read_table_file, split_with_val)
from datasets.imaging import CaseInsensitiveFiles, build_image_source

log = logging.getLogger(__name__)
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


@dataclass(frozen=True)
class FolderManifestOptions(CsvManifestOptions):
    mode: Literal["scan", "manifest"] = "scan"
    views: dict = field(default_factory=dict)        # scan: view -> filename pattern in the id folder
    fold_dir: str = "{fold}fold"                     # scan: folder of fold k (only when fold is set)
    class_names: tuple[str, ...] | None = None       # scan: class folders in label order (default sorted)
    task: Literal["auto", "binary", "multiclass"] = "auto"
    clinical_csv: str | None = None                  # scan: relative to the data root
    id_column: str | int = 0                         # header name or 0-based position
    numeric: Any = ()                                # [names] or {name: header | position}
    categorical: Any = ()
    categories: dict = field(default_factory=dict)   # name -> fixed level order (else fitted on train)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.mode == "scan":
            if not self.views:
                raise ConfigError(f"{where}.views: scan mode needs view -> filename pattern (e.g. t1: t1_bbox.nii.gz)")
            if not self.clinical_csv:
                raise ConfigError(f"{where}.clinical_csv: scan mode needs the clinical CSV (tabular modality)")
            for name in ("numeric", "categorical"):
                _column_map(getattr(self, name), f"{where}.{name}")
            if not (self.numeric or self.categorical):
                raise ConfigError(f"{where}: declare at least one tabular column (numeric or categorical)")
            for col in self.categories:
                if col not in _column_map(self.categorical, f"{where}.categorical"):
                    raise ConfigError(f"{where}.categories.{col}: not a declared categorical column")


def _column_map(value: Any, where: str) -> dict[str, str | int]:
    """[names] or {name: header | position} -> {name: header | position}."""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: a list must hold header names; use a mapping name: position for positions")
        return {v: v for v in value}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise ConfigError(f"{where}.{k}: expected a header name or a 0-based position, got {v!r}")
        return dict(value)
    raise ConfigError(f"{where}: expected a list of names or a mapping name -> column, got {value!r}")


@register_dataset("folder_manifest")
class FolderManifestDataset(BenchmarkDataset):
    display_name = "Image folders + clinical CSV"
    source_url = "your own data (README 'folder_manifest'); MEN is private"
    expected_files = ("[<fold_dir>/]{train,test}/<class>/<id>/<view files>", "<clinical_csv>")
    primary_metric = "auc"
    Options = FolderManifestOptions

    def __init__(self, root: Any = None, **options: Any) -> None:
        super().__init__(root, **options)
        o = self.options
        if o.mode == "manifest":
            self.spec, self.base = load_spec(self.root, o.spec_file, o.spec, self.registry_name)
            self.task, self.views = self.spec.task, tuple(self.spec.views)
            if self.spec.task == "multilabel":
                self.class_names = tuple(self.spec.label_columns)
            elif self.spec.class_names is not None:
                self.class_names = tuple(self.spec.class_names)
            return
        self.views = tuple(o.views)
        self.scan_root = self.root / o.fold_dir.format(fold=o.fold) if o.fold is not None else self.root
        if not self.scan_root.is_dir():
            raise DatasetLayoutError(
                f"dataset '{self.registry_name}': fold folder {self.scan_root} does not exist; expected "
                f"<root>/{o.fold_dir.format(fold=o.fold)}/{{train,test}}/<class>/<id>/<view files>")
        if o.class_names is not None:
            self.class_names = tuple(o.class_names)
            self.task = self._task(len(self.class_names))

    def _task(self, k: int) -> str:
        if self.options.task != "auto":
            if self.options.task == "binary" and k != 2:
                raise ConfigError(f"dataset '{self.registry_name}' options.task: binary needs 2 classes, found {k}")
            return self.options.task
        return "binary" if k == 2 else "multiclass"

    # -- table ------------------------------------------------------------------------------
    def load_table(self) -> SampleTable:
        if self.options.mode == "manifest":
            table, self.class_names = manifest_table(self.spec, self.base, self.options, self.registry_name)
            return table
        samples = self._scan()
        ids = check_ids([s[0] for s in samples], self.registry_name, str(self.scan_root))
        labels = np.asarray([s[2] for s in samples], dtype=np.int64)
        split = np.asarray([s[1] for s in samples]).astype(str)
        numeric, categorical, columns, tab_available = self._clinical(ids)
        refs = {v: [s[3][v] for s in samples] for v in self.views}
        images = build_image_source(self.registry_name, self.views, ids, refs,
                                    CaseInsensitiveFiles(self.scan_root), self.options,
                                    sources={v: f"file pattern '{p}'" for v, p in self.options.views.items()})
        counts = {s: int((split == s).sum()) for s in SPLITS}
        log.info("dataset '%s': %s samples per split, %d without a clinical row", self.registry_name, counts,
                 int((~tab_available).sum()))
        return SampleTable(ids=ids, labels=labels, numeric=numeric, categorical=categorical, columns=columns,
                           images=images.source, view_available=images.view_available,
                           tabular_available=tab_available, split=split,
                           extras={"real_missing": images.counts, "image_shape": images.image_shape})

    def _scan(self) -> list[tuple[str, str, int, dict[str, str | None]]]:
        """(id, split, label, view -> path relative to the scan root) per patient folder."""
        o = self.options
        layout = f"{self.scan_root}/{{train,test[,val]}}/<class>/<id>/<view files>"
        split_dirs: dict[str, Path] = {}
        for split, names in SPLIT_DIRS.items():
            for name in names:
                if (self.scan_root / name).is_dir():
                    split_dirs[split] = self.scan_root / name
                    break
        for split in ("train", "test"):
            if split not in split_dirs:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': missing folder "
                                         f"{self.scan_root / split}; expected {layout}")
        found = sorted({d.name for p in split_dirs.values() for d in p.iterdir() if d.is_dir()})
        if o.class_names is None:
            self.class_names = tuple(found)
            self.task = self._task(len(found))
            if len(found) < 2:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': found {len(found)} class folder(s) "
                                         f"({', '.join(found)}) under {layout}; need at least 2")
        index = {c: k for k, c in enumerate(self.class_names)}
        out = []
        seen: dict[str, Path] = {}
        for split, split_dir in split_dirs.items():
            for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
                if class_dir.name not in index:
                    raise DatasetLayoutError(f"dataset '{self.registry_name}': class folder {class_dir} is not "
                                             f"one of class_names ({', '.join(self.class_names)})")
                for pdir in sorted(d for d in class_dir.iterdir() if d.is_dir()):
                    if pdir.name in seen:
                        raise DatasetLayoutError(f"dataset '{self.registry_name}': patient id '{pdir.name}' "
                                                 f"appears twice: {seen[pdir.name]} and {pdir}")
                    seen[pdir.name] = pdir
                    files = [f for f in pdir.iterdir() if f.is_file()]
                    refs: dict[str, str | None] = {}
                    for view, pattern in o.views.items():
                        hits = [f for f in files if fnmatch.fnmatch(f.name.lower(), str(pattern).lower())]
                        if len(hits) > 1:
                            raise DatasetLayoutError(
                                f"dataset '{self.registry_name}': view '{view}' pattern '{pattern}' matches "
                                f"several files in {pdir}: {', '.join(sorted(h.name for h in hits))}")
                        target = hits[0] if hits else pdir / str(pattern)  # absent: reported as not found
                        refs[view] = target.relative_to(self.scan_root).as_posix()
                    out.append((pdir.name, split, index[class_dir.name], refs))
        if not out:
            raise DatasetLayoutError(f"dataset '{self.registry_name}': no patient folders under {layout}")
        return out

    def _clinical(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[TabularColumn, ...], np.ndarray]:
        o = self.options
        path = self.root / str(o.clinical_csv)
        frame = read_table_file(path, self.registry_name, "the clinical CSV named by clinical_csv")
        headers = list(frame.columns)

        def column(ref: str | int, role: str) -> str:
            if isinstance(ref, int):
                if not 0 <= ref < len(headers):
                    raise DatasetLayoutError(f"dataset '{self.registry_name}': {path} has {len(headers)} columns; "
                                             f"{role} position {ref} does not exist")
                return headers[ref]
            if ref not in headers:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': {path} has no column '{ref}' ({role}; "
                                         f"columns: {', '.join(headers)})")
            return ref

        id_col = column(o.id_column, "id_column")
        num_map = {k: column(v, f"numeric '{k}'") for k, v in _column_map(o.numeric, "numeric").items()}
        cat_map = {k: column(v, f"categorical '{k}'") for k, v in _column_map(o.categorical, "categorical").items()}
        csv_ids = [cat_text(v) or "" for v in frame[id_col]]
        lookup: dict[str, int] = {}
        for i, cid in enumerate(csv_ids):
            if cid in lookup:
                raise DatasetLayoutError(f"dataset '{self.registry_name}': {path}: id {cid!r} appears twice "
                                         f"(rows {lookup[cid]} and {i})")
            if cid:
                lookup[cid] = i
        n = len(ids)
        numeric = np.full((n, len(num_map)), np.nan)
        categorical = np.full((n, len(cat_map)), None, dtype=object)
        has_row = np.zeros(n, bool)
        for r, sid in enumerate(ids):
            i = lookup.get(str(sid))
            if i is None:
                continue
            has_row[r] = True
            for j, (name, col) in enumerate(num_map.items()):
                numeric[r, j] = num_value(frame[col].iloc[i], f"dataset '{self.registry_name}': {path} row {i} "
                                                              f"column '{col}' ({name})")
            for j, col in enumerate(cat_map.values()):
                categorical[r, j] = cat_text(frame[col].iloc[i])
        extra = len(set(lookup) - set(ids.tolist()))
        if extra:
            log.info("dataset '%s': %d rows of %s match no image folder and are ignored", self.registry_name,
                     extra, path.name)
        if (~has_row).any():
            log.warning("dataset '%s': %d sample(s) have no row in %s (no tabular record): %s", self.registry_name,
                        int((~has_row).sum()), path.name, ", ".join(ids[~has_row][:5]))
        columns = tuple(TabularColumn(k, "numeric") for k in num_map) + tuple(
            TabularColumn(k, "categorical", tuple(str(x) for x in o.categories.get(k, ()))) for k in cat_map)
        for j, name in enumerate(cat_map):
            declared = o.categories.get(name)
            if declared:
                odd = sorted({v for v in categorical[:, j] if v is not None and v not in {str(x) for x in declared}})
                if odd:
                    log.warning("dataset '%s': column '%s' has values outside the declared categories %s: %s; "
                                "they encode as all-zero", self.registry_name, name, list(declared), odd)
        filled = (~np.isnan(numeric)).any(axis=1) | np.asarray([any(v is not None for v in row) for row in categorical],
                                                               dtype=bool)
        return numeric, categorical, columns, has_row & filled

    def split_indices(self, table: SampleTable, seed: int) -> dict[str, np.ndarray]:
        if table.split is None:
            return super().split_indices(table, seed)
        return split_with_val(self, table, seed, self.options.val_fraction)


MEN_CLASSES = ("Grade_1", "Grade_2_invasion", "Grade_2_noninvasion")


@dataclass(frozen=True)
class MenOptions(FolderManifestOptions):
    """MEN defaults from CFCML's code; every (unknown) is an option."""

    views: dict = field(default_factory=lambda: {"t1": "t1_bbox.nii.gz", "t2": "t2_bbox.nii.gz",
                                                 "adc": "adc_bbox.nii.gz"})
    fold: int | None = 1
    class_names: tuple[str, ...] | None = MEN_CLASSES
    task: Literal["auto", "binary", "multiclass"] = "multiclass"
    clinical_csv: str | None = "clinical.csv"                       # (unknown) file name
    id_column: str | int = 0
    categorical: Any = field(default_factory=lambda: {"location": 4, "sex": 5})
    numeric: Any = field(default_factory=lambda: {"age": 6, "adc": 7, "tumor_area": 8, "edema_area": 9})
    categories: dict = field(default_factory=lambda: {"location": ["1", "2", "3"], "sex": ["0", "1"]})
    clip: tuple[float, float] | None = (0.0, 1200.0)
    zscore: Literal["nonzero", "all", "none"] = "nonzero"
    resize: tuple[int, ...] | None = (24, 128, 128)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.fold not in (1, 2, 3):
            raise ConfigError(f"{where}.fold: MEN has folds 1, 2, 3; got {self.fold}")


@register_dataset("men")
class MenDataset(FolderManifestDataset):
    """MEN meningioma grading (private): ``folder_manifest`` with CFCML's layout as defaults."""

    display_name = "MEN (meningioma, private)"
    task = "multiclass"
    class_names = MEN_CLASSES
    views = ("t1", "t2", "adc")
    source_url = "private (Tianjin Huanhu Hospital); not downloadable"
    expected_files = ("{1,2,3}fold/{train,test}/{Grade_1,Grade_2_invasion,Grade_2_noninvasion}/<patient>/"
                      "{t1,t2,adc}_bbox.nii.gz", "clinical.csv")
    Options = MenOptions
