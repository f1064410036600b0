"""Reading the cells of a dataset's table: text, numbers, ids and labels, with the messages that
name the file, row and column (shared by ``csv_manifest``, ``folder_manifest`` and the dataset
releases built on them)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DatasetLayoutError

_INTEGRAL = re.compile(r"^[+-]?\d+\.0*$")


def cat_text(value: object) -> str | None:
    """Categorical cell -> stripped text (None when empty); ``1.0`` -> ``1``."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.split(".")[0] if _INTEGRAL.match(text) else text


def num_value(value: object, where: str) -> float:
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return float("nan")
    try:
        return float(str(value).strip())
    except ValueError:
        raise DatasetLayoutError(f"{where}: {value!r} is not a number") from None


def read_table_file(path: Path, dataset: str, what: str) -> pd.DataFrame:
    """A CSV (``.tab``/``.tsv``: tab-separated, as Harvard Dataverse serves tables) as strings
    (empty cell = ''); headers stripped."""
    if not path.is_file():
        raise DatasetLayoutError(f"dataset '{dataset}': missing {path} ({what})")
    try:
        sep = "\t" if path.suffix.lower() in (".tab", ".tsv") else ","
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"dataset '{dataset}': cannot parse {path} ({what}): {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def check_ids(ids: list[str], dataset: str, source: str) -> np.ndarray:
    """Ids key masks and splits, and are written to CSV: unique, non-empty, no comma/newline."""
    for i, sid in enumerate(ids):
        if not sid:
            raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: empty sample id")
        if any(c in sid for c in ",\n\r"):
            raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: sample id {sid!r} contains a "
                                     "comma or newline (ids are written to the mask CSV files)")
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise DatasetLayoutError(f"dataset '{dataset}': {source}: sample id {sid!r} appears twice "
                                     f"(rows {seen[sid]} and {i})")
        seen[sid] = i
    return np.asarray(ids)


def single_labels(values: list[str], class_names: tuple[str, ...] | None, task: str, dataset: str,
                  source: str, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class values -> int labels; class order declared, else sorted ints, else sorted text."""
    texts = [cat_text(v) for v in values]
    for i, t in enumerate(texts):
        if t is None:
            raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: label column '{column}' is empty")
    if class_names is None:
        uniq = set(texts)
        if all(re.fullmatch(r"[+-]?\d+", t) for t in uniq):
            class_names = tuple(str(v) for v in sorted(int(t) for t in uniq))
        else:
            class_names = tuple(sorted(uniq))
    index = {str(c): k for k, c in enumerate(class_names)}
    labels = np.empty(len(texts), np.int64)
    for i, t in enumerate(texts):
        if t not in index:
            raise DatasetLayoutError(f"dataset '{dataset}': {source} row {i}: label {t!r} in column '{column}' "
                                     f"is not one of the classes {', '.join(map(str, class_names))}")
        labels[i] = index[t]
    if task == "binary" and len(class_names) != 2:
        raise DatasetLayoutError(f"dataset '{dataset}': {source} column '{column}': task binary needs 2 classes, "
                                 f"found {len(class_names)} ({', '.join(map(str, class_names))})")
    if task == "multiclass" and len(class_names) < 2:
        raise DatasetLayoutError(f"dataset '{dataset}': {source} column '{column}': only one class "
                                 f"({class_names[0]}) found")
    return labels, tuple(str(c) for c in class_names)
