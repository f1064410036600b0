"""Generic "CSV manifest + image folder" dataset (datasets spec section 5).

A YAML file next to the CSV (``manifest.yaml`` under the data root by default, or the inline
``spec`` option) describes the data and is validated once::

    manifest: cases.csv          # one row per sample
    image_root: images/          # view paths are relative to this (absolute paths also work); a list
                                 # of folders is searched in order (e.g. [part_1/, part_2/])
    id_column: patient_id
    task: binary                 # binary | multiclass | multilabel
    label_columns: [malignant]   # one column (class name or int) or K 0/1 columns for multilabel
    views: {main: image_path}    # view -> column holding the file path, or a template over
                                 # columns: {main: "{image_id}.jpg"}
    categorical: [sex, site]
    numeric: [age, psa]
    split_column: split          # optional, values train|val|test; else seeded stratified 70/10/20
    fold_column: null            # optional integer folds; the dataset option `fold` picks the test fold
    group_column: null           # optional patient/lesion column: no group is ever in two splits
    class_names: null            # optional order of the label values (single-column labels)
    label_map: {}                # optional raw label value -> class name (e.g. BCC: cancer)
    categories: {}               # optional fixed category order per categorical column
    na_values: []                # optional tabular cell texts that mean "empty" (e.g. UNK, unknown)

Rules: an empty path is a missing view; an absent or unreadable file is real missingness
(counted and reported, never dropped); an empty tabular cell is NaN (numeric) or unknown
(categorical); a row whose declared tabular cells are all empty has no tabular record; an empty
label is an error.  Columns that are neither declared nor used are ignored with one warning.
Layout check: a view whose paths resolve for fewer than ``min_image_share`` (default 50 %) of the
rows that name a file stops loading with one DatasetLayoutError (wrong folder or template).
Groups: with ``group_column`` the seeded split assigns whole groups, the carved validation part
too, and an official split or fold column that puts one group in two splits is an error.
Categorical cells are compared as stripped text, with integral numbers normalised (``1.0`` ->
``1``).  Validation split (ours): when the split column has no ``val`` rows, or with folds, a
seeded stratified ``val_fraction`` of the training rows (id-keyed, like every split here).
Images: ``.png/.jpg`` (2-D), ``.npy`` (2-D/3-D arrays, or 1-D precomputed embeddings) and
``.nii/.nii.gz`` (optional ``nibabel`` extra); see :mod:`datasets.imaging` for preprocessing.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from core.contract import SPLITS, SampleTable, TabularColumn
from core.errors import ConfigError, DatasetLayoutError
from core.masks import stratum_labels
from core.options import from_mapping
from datasets import register_dataset
from datasets.base import BenchmarkDataset
from datasets.imaging import ArrayImageOptions, CaseInsensitiveFiles, SearchPath, build_image_source
from datasets.splitting import check_group_split, seeded_split
from datasets.tables import cat_text, check_ids, num_value, read_table_file, single_labels

__all__ = ["CsvManifestDataset", "CsvManifestOptions", "ManifestSpec", "cat_text", "check_ids", "load_spec",
           "manifest_table", "num_value", "read_table_file", "single_labels", "split_with_val", "view_columns"]
log = logging.getLogger(__name__)
TEMPLATE_FIELD = re.compile(r"{([^{}]*)}")


@dataclass(frozen=True)
class ManifestSpec:
    """The section-5 schema of ``manifest.yaml``."""

    manifest: str
    id_column: str
    task: Literal["binary", "multiclass", "multilabel"]
    label_columns: tuple[str, ...] | str
    views: dict
    image_root: str | tuple[str, ...] = ""
    categorical: tuple[str, ...] | str = ()
    numeric: tuple[str, ...] | str = ()
    split_column: str | None = None
    fold_column: str | None = None
    group_column: str | None = None
    class_names: tuple[str | int, ...] | None = None
    label_map: dict = field(default_factory=dict)
    categories: dict = field(default_factory=dict)
    na_values: tuple[str, ...] | str = ()

    def __post_init__(self) -> None:
        for name in ("label_columns", "categorical", "numeric", "na_values"):  # one name = a one-item list
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, (getattr(self, name),))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def validate(self, where: str) -> None:
        if not self.label_columns:
            raise ConfigError(f"{where}.label_columns: at least one label column is needed")
        if self.task == "multilabel" and len(self.label_columns) < 2:
            raise ConfigError(f"{where}.label_columns: multilabel needs K >= 2 0/1 columns, got "
                              f"{list(self.label_columns)}")
        if self.task != "multilabel" and len(self.label_columns) != 1:
            raise ConfigError(f"{where}.label_columns: task {self.task} takes one label column, got "
                              f"{list(self.label_columns)}")
        if not self.views:
            raise ConfigError(f"{where}.views: at least one view (view name -> path column) is needed")
        for view, col in self.views.items():
            if not isinstance(col, str) or not col:
                raise ConfigError(f"{where}.views.{view}: expected a column name or a path template, got {col!r}")
            if "{" in col and not all(TEMPLATE_FIELD.findall(col)):
                raise ConfigError(f"{where}.views.{view}: template {col!r} has an empty field; write column names "
                                  "in braces, e.g. '{image_id}.jpg'")
        if self.label_map and self.task == "multilabel":
            raise ConfigError(f"{where}.label_map: only for single-column labels")
        if self.label_map and self.class_names is not None:
            odd = sorted({str(v) for v in self.label_map.values()} - set(self.class_names))
            if odd:
                raise ConfigError(f"{where}.label_map: {odd[0]!r} is not one of class_names {list(self.class_names)}")
        if not (self.categorical or self.numeric):
            raise ConfigError(f"{where}: declare at least one tabular column (categorical or numeric)")
        if self.split_column and self.fold_column:
            raise ConfigError(f"{where}: set split_column or fold_column, not both")
        if self.class_names is not None and self.task == "multilabel":
            raise ConfigError(f"{where}.class_names: multilabel class names are the label_columns")
        if self.class_names is not None and self.task == "binary" and len(self.class_names) != 2:
            raise ConfigError(f"{where}.class_names: binary needs exactly 2 names, got {list(self.class_names)}")
        for col, levels in self.categories.items():
            if col not in self.categorical:
                raise ConfigError(f"{where}.categories.{col}: not a declared categorical column")
            if not isinstance(levels, (list, tuple)) or not levels:
                raise ConfigError(f"{where}.categories.{col}: expected a non-empty list of levels")
        used = [self.id_column, *self.label_columns, *self.categorical, *self.numeric,
                *(c for c in (self.split_column, self.fold_column) if c)]
        dup = sorted({c for c in used if used.count(c) > 1})
        if dup:
            raise ConfigError(f"{where}: column '{dup[0]}' is used twice (id/label/tabular/split roles)")


@dataclass(frozen=True)
class CsvManifestOptions(ArrayImageOptions):
    spec_file: str = "manifest.yaml"     # the section-5 YAML, relative to the data root
    spec: dict | None = None             # inline instead of the file (same keys)
    fold: int | None = None              # with fold_column: the test fold
    val_fraction: float = 0.15           # carved from train when there is no val split (ours)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{where}.val_fraction: must be in [0, 1), got {self.val_fraction}")


def view_columns(spec: ManifestSpec) -> dict[str, tuple[str, ...]]:
    """view -> the column(s) its paths come from: the column, or the fields of its template."""
    return {v: tuple(TEMPLATE_FIELD.findall(c)) if "{" in c else (c,) for v, c in spec.views.items()}


def fill_template(template: str, cells: dict[str, str | None]) -> str | None:
    """``'{image_id}.jpg'`` filled from one row's cells; None when a cell it needs is empty."""
    if any(v is None for v in cells.values()):
        return None
    return TEMPLATE_FIELD.sub(lambda m: str(cells[m.group(1)]), template)


def view_paths(frame: pd.DataFrame, spec: ManifestSpec) -> dict[str, list[str | None]]:
    """Each row's path per view: the column's cell, or its template filled from the row."""
    out: dict[str, list[str | None]] = {}
    for view, cols in view_columns(spec).items():
        if "{" not in spec.views[view]:
            out[view] = list(frame[spec.views[view]])
            continue
        cells = {c: [cat_text(v) for v in frame[c]] for c in cols}
        out[view] = [fill_template(spec.views[view], {c: cells[c][i] for c in cols}) for i in range(len(frame))]
    return out


def split_with_val(dataset: BenchmarkDataset, table: SampleTable, seed: int,
                   val_fraction: float) -> dict[str, np.ndarray]:
    """Official train/test (and val if given); otherwise val = seeded stratified part of train."""
    out = {s: np.flatnonzero(table.split == s) for s in SPLITS}
    for s in ("train", "test"):
        if len(out[s]) == 0:
            raise DatasetLayoutError(f"dataset '{dataset.registry_name}': the split has no '{s}' rows")
    check_group_split(dataset.registry_name, table.groups, out, "the split column (or folds)")
    if len(out["val"]) == 0 and val_fraction > 0:
        train = out["train"]
        strata = stratum_labels(table.labels[train], dataset.task)
        groups = None if table.groups is None else table.groups[train]
        parts = seeded_split(table.ids[train], strata, seed, (1.0 - val_fraction, val_fraction, 0.0), groups)
        out["val"] = np.sort(train[parts["val"]])
        out["train"] = np.sort(train[np.concatenate([parts["train"], parts["test"]])])
    return out


def load_spec(root: Path, spec_file: str, inline: dict | None, dataset: str) -> tuple[ManifestSpec, Path]:
    """The validated manifest spec and the folder its paths are relative to."""
    if inline is not None:
        return from_mapping(ManifestSpec, inline, f"dataset '{dataset}' options.spec"), root
    path = root / spec_file
    if not path.is_file():
        raise DatasetLayoutError(
            f"dataset '{dataset}': missing {path}; expected a manifest YAML (keys manifest, id_column, task, "
            "label_columns, views, categorical, numeric; see README 'csv_manifest') or the inline option 'spec'")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return from_mapping(ManifestSpec, raw, str(path)), path.parent


def manifest_table(spec: ManifestSpec, base: Path, options: CsvManifestOptions,
                   dataset: str) -> tuple[SampleTable, tuple[str, ...]]:
    """Read the manifest CSV into a SampleTable; returns it with the class names."""
    csv_path = base / spec.manifest
    frame = read_table_file(csv_path, dataset, "the manifest CSV named by 'manifest'")
    source = str(csv_path)
    needed = [spec.id_column, *spec.label_columns, *(c for cols in view_columns(spec).values() for c in cols),
              *spec.categorical, *spec.numeric,
              *(c for c in (spec.split_column, spec.fold_column, spec.group_column) if c)]
    for col in needed:
        if col not in frame.columns:
            raise DatasetLayoutError(f"dataset '{dataset}': {csv_path} has no column '{col}' (columns: "
                                     f"{', '.join(frame.columns)})")
    unused = [c for c in frame.columns if c not in set(needed)]
    if unused:
        log.warning("dataset '%s': %s columns not declared in the manifest spec are ignored: %s", dataset,
                    csv_path.name, ", ".join(unused))
    n = len(frame)
    if n == 0:
        raise DatasetLayoutError(f"dataset '{dataset}': {csv_path} has no rows")
    ids = check_ids([str(v).strip() for v in frame[spec.id_column]], dataset, source)
    na = {str(v).strip().lower() for v in spec.na_values}
    for col in (*spec.numeric, *spec.categorical) if na else ():  # e.g. UNK / unknown: real missingness
        frame[col] = ["" if str(v).strip().lower() in na else v for v in frame[col]]

    if spec.task == "multilabel":
        labels = np.empty((n, len(spec.label_columns)), np.float32)
        for k, col in enumerate(spec.label_columns):
            for i, v in enumerate(frame[col]):
                t = cat_text(v)
                if t is None:
                    raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: label column '{col}' is empty")
                if t not in ("0", "1"):
                    raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: label column '{col}' is "
                                             f"{v!r}, expected 0 or 1")
                labels[i, k] = float(t)
        class_names = tuple(spec.label_columns)
    else:
        col = spec.label_columns[0]
        mapped = {str(k): str(v) for k, v in spec.label_map.items()}
        values = [mapped.get(cat_text(v) or "", v) for v in frame[col]]
        labels, class_names = single_labels(values, spec.class_names, spec.task, dataset, source, col)

    numeric = np.empty((n, len(spec.numeric)), np.float64)
    for j, col in enumerate(spec.numeric):
        numeric[:, j] = [num_value(v, f"dataset '{dataset}': {source} row {i} column '{col}'")
                         for i, v in enumerate(frame[col])]
    categorical = np.empty((n, len(spec.categorical)), dtype=object)
    for j, col in enumerate(spec.categorical):
        categorical[:, j] = [cat_text(v) for v in frame[col]]
    columns = tuple(TabularColumn(c, "numeric") for c in spec.numeric) + tuple(
        TabularColumn(c, "categorical", tuple(str(x) for x in spec.categories.get(c, ()))) for c in spec.categorical)
    for j, col in enumerate(spec.categorical):
        declared = spec.categories.get(col)
        if declared:
            odd = sorted({v for v in categorical[:, j] if v is not None and v not in {str(x) for x in declared}})
            if odd:
                log.warning("dataset '%s': column '%s' has values outside the declared categories %s: %s; they "
                            "encode as all-zero", dataset, col, list(declared), odd)
    tab_available = (~np.isnan(numeric)).any(axis=1) | np.asarray(
        [any(v is not None for v in row) for row in categorical], dtype=bool)
    if not tab_available.all():
        log.info("dataset '%s': %d rows have every tabular cell empty (no tabular record)", dataset,
                 int((~tab_available).sum()))

    split = None
    if spec.split_column:
        split = np.empty(n, dtype=object)
        for i, v in enumerate(frame[spec.split_column]):
            s = str(v).strip().lower()
            if s not in SPLITS:
                raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: split column "
                                         f"'{spec.split_column}' is {v!r}, expected one of {', '.join(SPLITS)}")
            split[i] = s
        split = split.astype(str)
    elif spec.fold_column:
        folds = []
        for i, v in enumerate(frame[spec.fold_column]):
            t = cat_text(v)
            if t is None or not re.fullmatch(r"[+-]?\d+", t):
                raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: fold column "
                                         f"'{spec.fold_column}' is {v!r}, expected an integer")
            folds.append(int(t))
        known = sorted(set(folds))
        if options.fold is None:
            raise ConfigError(f"dataset '{dataset}': the manifest has fold_column '{spec.fold_column}'; set the "
                              f"dataset option fold to one of {known}")
        if options.fold not in known:
            raise ConfigError(f"dataset '{dataset}' options.fold: {options.fold} is not in the folds {known}")
        split = np.where(np.asarray(folds) == options.fold, "test", "train").astype(str)

    groups = None
    if spec.group_column:
        groups = np.asarray([cat_text(v) or "" for v in frame[spec.group_column]])
        empty = np.flatnonzero(groups == "")
        if len(empty):
            raise DatasetLayoutError(f"dataset '{dataset}': {source} row {empty[0]}: group column "
                                     f"'{spec.group_column}' is empty (every row needs its patient/lesion)")

    roots = [spec.image_root] if isinstance(spec.image_root, str) else list(spec.image_root)
    dirs = [base / r if r else base for r in roots]
    sources = {v: f"column '{c}'" if "{" not in c else f"path template '{c}'" for v, c in spec.views.items()}
    images = build_image_source(dataset, tuple(spec.views), ids, view_paths(frame, spec),
                                CaseInsensitiveFiles(dirs[0]) if len(dirs) == 1 else SearchPath(dirs), options,
                                sources=sources)
    table = SampleTable(ids=ids, labels=labels, numeric=numeric, categorical=categorical, columns=columns,
                        images=images.source, view_available=images.view_available,
                        tabular_available=tab_available, split=split, groups=groups,
                        extras={"real_missing": images.counts, "image_shape": images.image_shape})
    return table, class_names


@register_dataset("csv_manifest")
class CsvManifestDataset(BenchmarkDataset):
    display_name = "CSV manifest"
    source_url = "your own data: a CSV + images described by manifest.yaml (README 'csv_manifest')"
    expected_files = ("manifest.yaml (section-5 schema)", "<manifest>.csv", "<image_root>/...")
    Options = CsvManifestOptions

    def __init__(self, root: Any = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.spec, self.base = load_spec(self.root, self.options.spec_file, self.options.spec, self.registry_name)
        self.task = self.spec.task
        self.views = tuple(self.spec.views)
        if self.spec.task == "multilabel":
            self.class_names = tuple(self.spec.label_columns)
        elif self.spec.class_names is not None:
            self.class_names = tuple(self.spec.class_names)
        if self.spec.fold_column and self.options.fold is None:
            raise ConfigError(f"dataset '{self.registry_name}': the manifest has fold_column "
                              f"'{self.spec.fold_column}'; set the dataset option fold")

    def load_table(self) -> SampleTable:
        table, self.class_names = manifest_table(self.spec, self.base, self.options, self.registry_name)
        return table

    def split_indices(self, table: SampleTable, seed: int) -> dict[str, np.ndarray]:
        if table.split is None:
            return super().split_indices(table, seed)
        return split_with_val(self, table, seed, self.options.val_fraction)
