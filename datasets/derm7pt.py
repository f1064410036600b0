"""Derm7pt (Kawahara et al. 2019), read from the official ``release_v0`` (datasets spec section 2).

Layout (unzip ``release_v0`` from https://derm.cs.sfu.ca; ``--data-root`` may point at
``release_v0`` itself or at the folder that contains it)::

    images/<subdir>/<file>                 # e.g. NEL/NEL025.JPG; extension case varies
    meta/meta.csv                          # one row per case; columns selected by name
    meta/{train,valid,test}_indexes.csv    # column 'indexes' = 0-based row of meta.csv

The official 413 / 203 / 395 split is used as is (``valid`` becomes ``val``).  ``clinic`` and
``derm`` are the two views of the image modality; their paths are resolved case-insensitively
because ``meta.csv`` and the file names disagree on case.  An absent or unreadable image is real
missingness: the view is unavailable, counted and reported, and the case is kept.

Tabular input (CFCML's five fields, all categorical, one-hot in the declared order = 20 dims):
``level_of_diagnostic_difficulty``, ``elevation``, ``location``, ``sex``, ``management``.
``management`` is a post-diagnosis decision and likely leaks the label: ``tabular_columns:
no_management`` drops it (17 dims); report both.  The 7-point criteria are never tabular inputs.
Deviation (documented): CFCML's main run encodes these fields as CLIP text; offline we use its
one-hot MLP path.  An unseen value encodes as all zeros and is logged as a warning.

Group: none.  Each case is one lesion with its two images, and the release publishes no patient
identifier, so there is nothing to group by (the official split is used as is).

Tasks: ``nev_mel`` (default, CFCML: NEV=0 vs MEL=1, other diagnoses dropped, binary AUC) and
``diag5`` (BCC/NEV/MEL/MISC/SK as the official ``Derm7PtDatasetGroupInfrequent``, macro AUC).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.contract import SampleTable, TabularColumn
from core.errors import DatasetLayoutError
from datasets import register_dataset
from datasets.base import BenchmarkDataset
from datasets.imaging import CaseInsensitiveFiles, RasterImageOptions, build_image_source

log = logging.getLogger(__name__)

META_COLUMNS = ("case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
                "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
                "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic",
                "derm", "case_id", "notes")
SPLIT_FILES = (("train", "train_indexes.csv"), ("val", "valid_indexes.csv"), ("test", "test_indexes.csv"))
LAYOUT = ("official release_v0 layout: images/<subdir>/<file>, meta/meta.csv, "
          "meta/{train,valid,test}_indexes.csv (column 'indexes')")

# Declared category order (CFCML's MLP path): keep it, so the one-hot layout matches upstream.
TABULAR_FIELDS: dict[str, tuple[str, ...]] = {
    "level_of_diagnostic_difficulty": ("low", "medium", "high"),
    "elevation": ("palpable", "nodular", "flat"),
    "location": ("upper limbs", "head neck", "back", "lower limbs", "chest", "abdomen", "buttocks", "acral",
                 "genital areas"),
    "sex": ("female", "male"),
    "management": ("excision", "clinical follow up", "no further examination"),
}

NEVUS = ("nevus", "blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
         "recurrent nevus", "reed or spitz nevus")
MELANOMA = ("melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)", "melanoma (0.76 to 1.5 mm)",
            "melanoma (more than 1.5 mm)", "melanoma metastasis")
# Derm7PtDatasetGroupInfrequent (official derm7pt repository), class order BCC, NEV, MEL, MISC, SK.
DIAG5: dict[str, tuple[str, ...]] = {
    "BCC": ("basal cell carcinoma",),
    "NEV": NEVUS,
    "MEL": MELANOMA,
    "MISC": ("dermatofibroma", "lentigo", "melanosis", "miscellaneous", "vascular lesion"),
    "SK": ("seborrheic keratosis",),
}


@dataclass(frozen=True)
class Derm7ptOptions(RasterImageOptions):
    task: Literal["nev_mel", "diag5"] = "nev_mel"
    tabular_columns: Literal["cfcml", "no_management"] = "cfcml"


def _norm(value: object) -> str | None:
    """Lower-case, single-spaced text; None for an empty cell."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = " ".join(str(value).strip().lower().split())
    return text or None


@register_dataset("derm7pt")
class Derm7ptDataset(BenchmarkDataset):
    display_name = "Derm7pt"
    task = "binary"
    class_names = ("NEV", "MEL")
    views = ("clinic", "derm")
    primary_metric = "auc"
    source_url = "https://derm.cs.sfu.ca (free registration; unzip release_v0)"
    expected_files = ("release_v0/ (the root may also be release_v0 itself) with meta/meta.csv",
                      "meta/{train,valid,test}_indexes.csv", "images/<subdir>/<file>")
    Options = Derm7ptOptions

    def __init__(self, root=None, **options) -> None:
        super().__init__(root, **options)
        if self.options.task == "diag5":
            self.task = "multiclass"
            self.class_names = tuple(DIAG5)
        self.release = self._find_release(self.root)

    # -- layout -----------------------------------------------------------------------------
    def _find_release(self, root: Path) -> Path:
        for candidate in (root, root / "release_v0"):
            if (candidate / "meta" / "meta.csv").is_file():
                return candidate
        raise DatasetLayoutError(
            f"dataset 'derm7pt': expected meta/meta.csv under {root} or {root / 'release_v0'} ({LAYOUT}). "
            f"Download: {self.source_url}")

    def _read_csv(self, path: Path, what: str) -> pd.DataFrame:
        if not path.is_file():
            raise DatasetLayoutError(f"dataset 'derm7pt': missing {path}; expected {what} ({LAYOUT})")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DatasetLayoutError(f"dataset 'derm7pt': cannot parse {path} ({what}): {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame

    def _read_indexes(self, n_rows: int) -> np.ndarray:
        split = np.full(n_rows, "", dtype=object)
        for name, filename in SPLIT_FILES:
            path = self.release / "meta" / filename
            frame = self._read_csv(path, f"meta/{filename} with column 'indexes'")
            if "indexes" not in frame.columns:
                raise DatasetLayoutError(
                    f"dataset 'derm7pt': {path} has no column 'indexes' (columns: {', '.join(frame.columns)}); "
                    f"expected meta/{filename} with column 'indexes'")
            for line, raw in enumerate(frame["indexes"], start=2):
                try:
                    idx = int(str(raw).strip())
                except ValueError:
                    raise DatasetLayoutError(
                        f"dataset 'derm7pt': {path} line {line}: index {raw!r} is not an integer") from None
                if not 0 <= idx < n_rows:
                    raise DatasetLayoutError(
                        f"dataset 'derm7pt': {path} line {line}: index {idx} is outside meta.csv's "
                        f"{n_rows} rows (0-based)")
                if split[idx]:
                    raise DatasetLayoutError(
                        f"dataset 'derm7pt': meta.csv row {idx} is in both '{split[idx]}' and '{name}' "
                        f"({path} line {line})")
                split[idx] = name
        return split

    # -- table ------------------------------------------------------------------------------
    def load_table(self) -> SampleTable:
        o = self.options
        meta_path = self.release / "meta" / "meta.csv"
        meta = self._read_csv(meta_path, "meta/meta.csv")
        fields = [f for f in TABULAR_FIELDS if not (o.tabular_columns == "no_management" and f == "management")]
        required = ["case_num", "diagnosis", "clinic", "derm", *fields]
        missing = [c for c in required if c not in meta.columns]
        if missing:
            raise DatasetLayoutError(
                f"dataset 'derm7pt': {meta_path} has no column '{missing[0]}' (missing: {', '.join(missing)}); "
                f"expected the official columns {', '.join(META_COLUMNS)}")
        split = self._read_indexes(len(meta))
        unassigned = int((split == "").sum())
        if unassigned:
            log.warning("dataset 'derm7pt': %d meta.csv rows are in no official split file and are not used",
                        unassigned)

        labels, keep = self._labels(meta, meta_path)
        keep &= split != ""
        rows = np.flatnonzero(keep)
        meta = meta.iloc[rows].reset_index(drop=True)
        labels, split = labels[rows], split[rows].astype(str)
        per_split = {s: "/".join(f"{int((labels[split == s] == k).sum())} {c}" for k, c in enumerate(self.class_names))
                     for s in ("train", "val", "test")}
        # Sanity check against the literature: nev_mel train = 256 NEV / 90 MEL (CFCML).
        log.info("dataset 'derm7pt' (%s): %d cases kept of %d; %s", o.task, len(rows), len(keep), per_split)

        ids = np.asarray([str(v).strip() for v in meta["case_num"]])
        if any(not i for i in ids) or len(set(ids.tolist())) != len(ids):
            dup = pd.Series(ids).value_counts()
            raise DatasetLayoutError(
                f"dataset 'derm7pt': {meta_path} column 'case_num' must be a unique, non-empty case id "
                f"(e.g. repeated: {dup.index[0]!r})")

        categorical = np.empty((len(meta), len(fields)), dtype=object)
        for j, name in enumerate(fields):
            values = [_norm(v) for v in meta[name]]
            categorical[:, j] = values
            unknown = sorted({v for v in values if v is not None and v not in TABULAR_FIELDS[name]})
            if unknown:
                n = sum(v in unknown for v in values)
                log.warning("dataset 'derm7pt': column '%s' has %d value(s) outside the declared categories "
                            "(%s): %s; they encode as the all-zero one-hot", name, n,
                            ", ".join(TABULAR_FIELDS[name]), ", ".join(repr(u) for u in unknown))
        columns = tuple(TabularColumn(name, "categorical", TABULAR_FIELDS[name]) for name in fields)
        tab_available = np.asarray([any(v is not None for v in row) for row in categorical], dtype=bool)

        images = build_image_source(
            "derm7pt", self.views, ids,
            {v: [str(p) if str(p).strip() else None for p in meta[v]] for v in self.views},
            CaseInsensitiveFiles(self.release / "images"), o,
            sources={v: f"meta/meta.csv column '{v}'" for v in self.views})
        extras = {"real_missing": images.counts, "image_shape": images.image_shape}
        return SampleTable(ids=ids, labels=labels, numeric=np.zeros((len(ids), 0)), categorical=categorical,
                           columns=columns, images=images.source, view_available=images.view_available,
                           tabular_available=tab_available, split=split, extras=extras)

    def _labels(self, meta: pd.DataFrame, meta_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Integer labels and which rows the task keeps (nev_mel drops other diagnoses)."""
        groups = ({"NEV": NEVUS, "MEL": MELANOMA} if self.options.task == "nev_mel" else DIAG5)
        lookup = {name: k for k, members in enumerate(groups.values()) for name in members}
        labels = np.zeros(len(meta), dtype=np.int64)
        keep = np.zeros(len(meta), dtype=bool)
        for i, raw in enumerate(meta["diagnosis"]):
            diag = _norm(raw)
            if diag is None:
                raise DatasetLayoutError(
                    f"dataset 'derm7pt': {meta_path} row {i} (line {i + 2}): column 'diagnosis' is empty")
            if diag in lookup:
                labels[i], keep[i] = lookup[diag], True
            elif self.options.task == "diag5":
                raise DatasetLayoutError(
                    f"dataset 'derm7pt': {meta_path} row {i} (line {i + 2}): diagnosis {raw!r} is not in "
                    f"any diag5 group ({', '.join(sorted(lookup))})")
        return labels, keep

