"""ODIR-5K (Peking University ocular disease recognition), three official layouts (spec section 3).

The loader auto-detects which download ``--data-root`` holds (or ``layout: A|B|C`` forces one):

* **A, grand-challenge** (https://odir2019.grand-challenge.org):
  ``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` + ``ODIR-5K_Training_Dataset/``.
* **B, Kaggle andrewmvd** (https://www.kaggle.com/datasets/andrewmvd/ocular-disease-recognition-odir5k):
  ``ODIR-5K/ODIR-5K/data.xlsx`` (patient level, preferred) or ``full_df.csv`` (one row per eye,
  grouped by ``ID``; an eye without a row counts as absent), images from
  ``ODIR-5K/ODIR-5K/Training Images/`` or ``preprocessed_images/`` (``use_preprocessed: true``).
* **C, OIA-ODIR** (https://github.com/nkicsl/OIA-ODIR): ``Training Set``, ``Off-site Test Set``,
  ``On-site Test Set``, each with ``Images/`` and ``Annotation/<name> annotation (English).xlsx``;
  official split train / val = off-site / test = on-site.  Ids are prefixed by the set
  (``train-12``) because the sets number patients independently.

Labels: multilabel ``[N, D, G, C, A, H, M, O]`` per patient (BCE); primary metric macro AUC; the
harness also reports ``auc_micro`` = the official ODIR AUC of the flattened N x 8 matrices.
Tabular: ``Patient Age`` (numeric) + ``Patient Sex`` (categorical Female/Male).  The diagnostic
keywords are **never** inputs: the labels are derived from them.  ``use_keywords: true`` adds
per-keyword eye counts as a *leakage demonstration only* (a warning says so).  An eye whose file
is absent or unreadable, or whose keywords contain ``no fundus image`` / ``anterior segment image``
(``unusable_keywords``), is a missing view; the image modality is missing only when both eyes are.
Group: each row is one patient, so the group is the patient (the sample id; ``table.groups``):
trivially no patient spans two splits, and the split is the per-sample one.
Layouts A/B have no labelled test set: a seeded, patient-level 70/10/20 split stratified on the
label powerset (combinations with fewer than ``min_stratum_size`` patients merged into "other") is
written to ``<splits_dir>/odir_<layout>_seed<k>.csv`` and reused from there afterwards.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.contract import SPLITS, SampleTable, TabularColumn
from core.errors import ConfigError, DatasetLayoutError
from datasets import register_dataset
from datasets.base import BenchmarkDataset, seeded_split
from datasets.imaging import CaseInsensitiveFiles, RasterImageOptions, build_image_source

log = logging.getLogger(__name__)

LABELS = ("N", "D", "G", "C", "A", "H", "M", "O")
HEADER = ("ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
          "Right-Diagnostic Keywords", *LABELS)
SEXES = ("Female", "Male")
A_XLSX = "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
A_IMAGES = "ODIR-5K_Training_Dataset"
B_XLSX = "ODIR-5K/ODIR-5K/data.xlsx"
B_CSV = "full_df.csv"
B_IMAGES = "ODIR-5K/ODIR-5K/Training Images"
B_PREPROCESSED = "preprocessed_images"
C_SETS = (("train", "Training Set", "training annotation (English).xlsx"),
          ("val", "Off-site Test Set", "off-site test annotation (English).xlsx"),
          ("test", "On-site Test Set", "on-site test annotation (English).xlsx"))
LAYOUTS_TEXT = (
    f"A (grand-challenge): {A_XLSX} + {A_IMAGES}/; "
    f"B (Kaggle andrewmvd): {B_XLSX} or {B_CSV}, images in {B_IMAGES}/ or {B_PREPROCESSED}/; "
    "C (OIA-ODIR): " + ", ".join(f"{d}/Annotation/{x} + {d}/Images/" for _, d, x in C_SETS))
KEYWORD_SPLIT = re.compile(r"[，,]")


@dataclass(frozen=True)
class OdirOptions(RasterImageOptions):
    layout: Literal["auto", "A", "B", "C"] = "auto"
    use_preprocessed: bool = False        # layout B: read preprocessed_images/ instead of Training Images/
    use_keywords: bool = False            # LEAKAGE DEMO ONLY: the labels are derived from the keywords
    unusable_keywords: tuple[str, ...] = ("no fundus image", "anterior segment image")
    splits_dir: str | None = "splits"     # layouts A/B: where odir_<layout>_seed<k>.csv is written/reused
    min_stratum_size: int = 10            # label-powerset combinations rarer than this merge into "other"

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.min_stratum_size < 1:
            raise ConfigError(f"{where}.min_stratum_size: must be >= 1, got {self.min_stratum_size}")


def split_keywords(cell: object) -> list[str]:
    """Keywords of one cell: separated by the full-width comma '，' or ','; lower-cased, stripped."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return []
    return [k for k in (" ".join(part.strip().lower().split()) for part in KEYWORD_SPLIT.split(str(cell))) if k]


def _id_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def detect_layouts(root: Path) -> list[str]:
    found = []
    if (root / A_XLSX).is_file():
        found.append("A")
    if (root / B_XLSX).is_file() or (root / B_CSV).is_file():
        found.append("B")
    if (root / C_SETS[0][1] / "Annotation" / C_SETS[0][2]).is_file():
        found.append("C")
    return found


@register_dataset("odir")
class OdirDataset(BenchmarkDataset):
    display_name = "ODIR-5K"
    task = "multilabel"
    class_names = LABELS
    views = ("left", "right")
    primary_metric = "auc"
    source_url = ("A: https://odir2019.grand-challenge.org ; B: https://www.kaggle.com/datasets/andrewmvd/"
                  "ocular-disease-recognition-odir5k ; C: https://github.com/nkicsl/OIA-ODIR")
    expected_files = (f"A: {A_XLSX} + {A_IMAGES}/", f"B: {B_XLSX} or {B_CSV} + {B_IMAGES}/",
                      "C: Training Set/, Off-site Test Set/, On-site Test Set/ (Images/ + Annotation/)")
    Options = OdirOptions

    def __init__(self, root=None, **options) -> None:
        super().__init__(root, **options)
        found = detect_layouts(self.root)
        o = self.options
        if o.layout == "auto":
            if not found:
                raise DatasetLayoutError(
                    f"dataset 'odir': no known layout under {self.root}; expected one of {LAYOUTS_TEXT}. "
                    f"Download: {self.source_url}")
            if len(found) > 1:
                raise DatasetLayoutError(
                    f"dataset 'odir': {self.root} matches several layouts ({', '.join(found)}); "
                    "set the dataset option layout to one of them")
            self.layout = found[0]
        else:
            if o.layout not in found:
                raise DatasetLayoutError(
                    f"dataset 'odir': layout {o.layout} requested but its files are not under {self.root}; "
                    f"expected {LAYOUTS_TEXT}")
            self.layout = o.layout
        if o.use_preprocessed and self.layout != "B":
            raise ConfigError(f"dataset 'odir' options.use_preprocessed: only layout B (Kaggle) has "
                              f"{B_PREPROCESSED}/, detected layout {self.layout}")

    def fingerprint(self) -> dict:
        out = super().fingerprint()
        out["layout"] = self.layout
        return out

    # -- reading ----------------------------------------------------------------------------
    def _read_patients(self, path: Path) -> pd.DataFrame:
        if not path.is_file():
            raise DatasetLayoutError(f"dataset 'odir' (layout {self.layout}): missing {path}; expected {LAYOUTS_TEXT}")
        try:
            if path.suffix.lower() == ".csv":
                frame = pd.read_csv(path, dtype=object, keep_default_na=True)
            else:
                frame = pd.read_excel(path, dtype=object, engine="openpyxl")
        except ImportError:
            raise DatasetLayoutError(f"dataset 'odir': reading {path} needs openpyxl (pip install openpyxl)") from None
        except Exception as exc:  # noqa: BLE001 - any parser failure names the file
            raise DatasetLayoutError(f"dataset 'odir': cannot read {path}: {type(exc).__name__}: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        missing = [c for c in HEADER if c not in frame.columns]
        if missing:
            raise DatasetLayoutError(
                f"dataset 'odir': {path} has no column '{missing[0]}' (missing: {', '.join(missing)}); "
                f"expected the patient-table columns {', '.join(HEADER)}")
        frame = frame[frame["ID"].notna()].reset_index(drop=True)  # trailing empty spreadsheet rows
        return frame

    def _parts(self) -> list[tuple[str | None, pd.DataFrame, Path, pd.DataFrame | None]]:
        """(official split or None, patient table, image folder, full_df rows or None) per file."""
        root = self.root
        if self.layout == "A":
            return [(None, self._read_patients(root / A_XLSX), root / A_IMAGES, None)]
        if self.layout == "B":
            images = root / (B_PREPROCESSED if self.options.use_preprocessed else B_IMAGES)
            if (root / B_XLSX).is_file():
                return [(None, self._read_patients(root / B_XLSX), images, None)]
            eyes = self._read_patients(root / B_CSV)
            if "filename" not in eyes.columns:
                raise DatasetLayoutError(
                    f"dataset 'odir': {root / B_CSV} has no column 'filename' (Kaggle full_df.csv has one row "
                    "per eye with its file in 'filename')")
            eyes["ID"] = [_id_text(v) for v in eyes["ID"]]
            patients = eyes.groupby("ID", sort=False).first().reset_index()
            conflict = eyes.groupby("ID")[list(LABELS)].nunique().max(axis=1)
            if (conflict > 1).any():
                bad = conflict[conflict > 1].index[0]
                raise DatasetLayoutError(f"dataset 'odir': {root / B_CSV}: the eye rows of patient ID {bad} "
                                         "disagree on the N..O labels (they must be patient-level)")
            return [(None, patients, images, eyes)]
        out = []
        for split, folder, xlsx in C_SETS:
            path = root / folder / "Annotation" / xlsx
            out.append((split, self._read_patients(path), root / folder / "Images", None))
        return out

    # -- table ------------------------------------------------------------------------------
    def load_table(self) -> SampleTable:
        o = self.options
        ids, splits, labels, ages, sexes = [], [], [], [], []
        refs: dict[str, list[str | None]] = {"left": [], "right": []}
        unusable: dict[str, list[bool]] = {"left": [], "right": []}
        keywords: list[list[str]] = []
        resolvers: list[CaseInsensitiveFiles] = []
        for split, frame, image_dir, eyes in self._parts():
            if not image_dir.is_dir():
                raise DatasetLayoutError(f"dataset 'odir' (layout {self.layout}): image folder {image_dir} "
                                         f"does not exist; expected {LAYOUTS_TEXT}")
            resolver = CaseInsensitiveFiles(image_dir)
            listed = None
            if eyes is not None:
                listed = {str(f).strip() for f in eyes["filename"] if isinstance(f, str)}
            source = self._source_name(split)
            for i, row in frame.iterrows():
                pid = _id_text(row["ID"])
                ids.append(pid if split is None else f"{split}-{pid}")
                splits.append(split)
                labels.append(self._label_row(row, i, source))
                ages.append(self._age(row["Patient Age"], i, source))
                sex = row["Patient Sex"]
                sex = None if sex is None or (isinstance(sex, float) and sex != sex) else str(sex).strip()
                sexes.append(sex.capitalize() if sex and sex.lower() in ("female", "male") else (sex or None))
                kw = []
                for eye, col, kcol in (("left", "Left-Fundus", "Left-Diagnostic Keywords"),
                                       ("right", "Right-Fundus", "Right-Diagnostic Keywords")):
                    words = split_keywords(row[kcol])
                    kw.append(words)
                    cell = row[col]
                    fname = None if cell is None or (isinstance(cell, float) and cell != cell) else str(cell).strip()
                    if listed is not None and fname not in listed:
                        fname = None  # full_df.csv has no row for this eye
                    refs[eye].append(fname)
                    unusable[eye].append(any(u.lower() in " ".join(words) for u in o.unusable_keywords))
                keywords.append(kw[0] + kw[1])
                resolvers.append(resolver)
        n = len(ids)
        if n == 0:
            raise DatasetLayoutError(f"dataset 'odir': the patient table(s) under {self.root} have no rows")
        ids_arr = np.asarray(ids)
        if len(set(ids)) != n:
            dup = pd.Series(ids).value_counts().index[0]
            raise DatasetLayoutError(f"dataset 'odir': patient ID {dup} appears twice in the patient table")

        numeric = np.asarray(ages, dtype=np.float64)[:, None]
        columns = [TabularColumn("Patient Age", "numeric")]
        if o.use_keywords:
            vocab = sorted({k for kws in keywords for k in kws})
            log.warning("dataset 'odir': use_keywords is ON — the diagnostic keywords define the labels, so "
                        "results with this option are a LEAKAGE DEMONSTRATION, not a benchmark result")
            counts = np.asarray([[kws.count(k) for k in vocab] for kws in keywords], dtype=np.float64)
            numeric = np.concatenate([numeric, counts.reshape(n, len(vocab))], axis=1)
            columns += [TabularColumn(f"keyword={k}", "numeric") for k in vocab]
        columns.append(TabularColumn("Patient Sex", "categorical", SEXES))
        categorical = np.asarray(sexes, dtype=object)[:, None]
        odd = sorted({s for s in sexes if s is not None and s not in SEXES})
        if odd:
            log.warning("dataset 'odir': 'Patient Sex' values outside %s encode as all-zero: %s", SEXES, odd)
        tab_available = ~np.isnan(numeric[:, 0]) | np.asarray([s is not None for s in sexes])

        images = build_image_source(
            "odir", self.views, ids_arr, refs, resolvers, o,
            unusable={v: np.asarray(unusable[v]) for v in self.views},
            sources={"left": "column 'Left-Fundus'", "right": "column 'Right-Fundus'"})
        split_arr = np.asarray(splits, dtype=object)
        split_out = split_arr.astype(str) if self.layout == "C" else None
        extras = {"real_missing": images.counts, "image_shape": images.image_shape, "layout": self.layout}
        log.info("dataset 'odir': layout %s, %d patients, eyes unusable by keyword: left %d, right %d",
                 self.layout, n, sum(unusable["left"]), sum(unusable["right"]))
        return SampleTable(ids=ids_arr, labels=np.asarray(labels, dtype=np.float32), numeric=numeric,
                           categorical=categorical, columns=tuple(columns), images=images.source,
                           view_available=images.view_available, tabular_available=tab_available,
                           split=split_out, extras=extras, groups=ids_arr)

    def _source_name(self, split: str | None) -> str:
        if self.layout == "A":
            return str(self.root / A_XLSX)
        if self.layout == "B":
            return str(self.root / (B_XLSX if (self.root / B_XLSX).is_file() else B_CSV))
        folder, xlsx = {s: (d, x) for s, d, x in C_SETS}[split or "train"]
        return str(self.root / folder / "Annotation" / xlsx)

    @staticmethod
    def _label_row(row: pd.Series, i: int, source: str) -> list[float]:
        out = []
        for name in LABELS:
            value = row[name]
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = float("nan")
            if v != v or v not in (0.0, 1.0):
                what = "is empty" if value is None or (isinstance(value, float) and value != value) else \
                    f"is {value!r}, expected 0 or 1"
                raise DatasetLayoutError(
                    f"dataset 'odir': {source} row {i} (ID {_id_text(row['ID'])}): label column '{name}' {what}")
            out.append(v)
        return out

    @staticmethod
    def _age(value: object, i: int, source: str) -> float:
        if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
            return float("nan")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DatasetLayoutError(
                f"dataset 'odir': {source} row {i}: 'Patient Age' is {value!r}, expected a number") from None

    # -- splits (layouts A/B) ----------------------------------------------------------------
    def powerset_strata(self, labels: np.ndarray) -> np.ndarray:
        keys = np.asarray(["".join(str(int(v)) for v in row) for row in labels])
        values, counts = np.unique(keys, return_counts=True)
        rare = set(values[counts < self.options.min_stratum_size].tolist())
        return np.asarray(["other" if k in rare else k for k in keys])

    def split_indices(self, table: SampleTable, seed: int) -> dict[str, np.ndarray]:
        if table.split is not None:
            return super().split_indices(table, seed)
        path = None
        if self.options.splits_dir:
            path = Path(self.options.splits_dir) / f"odir_{self.layout}_seed{seed}.csv"
            if path.is_file():
                return self._read_split_file(path, table)
        parts = seeded_split(table.ids, self.powerset_strata(table.labels), seed, self.split_fractions, table.groups)
        if path is not None:
            assigned = np.empty(len(table.ids), dtype=object)
            for s, rows in parts.items():
                assigned[rows] = s
            order = np.argsort(table.ids.astype(str), kind="stable")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".csv.tmp")
            pd.DataFrame({"id": table.ids[order], "split": assigned[order]}).to_csv(tmp, index=False)
            tmp.replace(path)
            log.info("dataset 'odir': wrote the patient split to %s", path)
        return parts

    def _read_split_file(self, path: Path, table: SampleTable) -> dict[str, np.ndarray]:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(frame.columns) != ["id", "split"]:
            raise DatasetLayoutError(f"dataset 'odir': split file {path} must have the columns id,split "
                                     f"(has {','.join(frame.columns)}); delete it to regenerate")
        lookup = dict(zip(frame["id"], frame["split"]))
        ids = table.ids.astype(str)
        if set(lookup) != set(ids.tolist()):
            extra = sorted(set(ids.tolist()) - set(lookup))[:3]
            raise DatasetLayoutError(
                f"dataset 'odir': split file {path} lists other patients than the data under {self.root} "
                f"(e.g. not in the file: {extra}); delete it to regenerate the split")
        bad = sorted({s for s in lookup.values() if s not in SPLITS})
        if bad:
            raise DatasetLayoutError(f"dataset 'odir': split file {path} has split value {bad[0]!r}; "
                                     f"expected one of {', '.join(SPLITS)}")
        assigned = np.asarray([lookup[i] for i in ids])
        return {s: np.flatnonzero(assigned == s) for s in SPLITS}

