"""From a dataset's raw table to the masked, normalised splits of one (missing spec, seed).

* tabular statistics are fitted on the *observed* training rows only;
* no group (patient, lesion) of ``table.groups`` is in two splits, whichever way the dataset split;
* masks are drawn per split from the id-keyed stream (``core.masks``) and persisted with their hash;
  each split with its own mechanism (``MissingSpec.mechanism_for``: the mechanism-shift protocol),
  ``mar`` ranked by the raw values of its column;
* a sample that has lost both modalities is removed from training and scored with the training
  prior at test time (by the harness, not the method).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.batch import PreparedData, SplitData
from core.contract import DatasetInfo, SampleTable
from core.errors import ConfigError, DatasetLayoutError
from core.masks import (IMAGE, TABULAR, MissingSpec, drop_mask, mask_mechanism, mask_sha256, persist_mask,
                        stratum_labels)
from core.tabular import TabularPreprocessor
from datasets.splitting import check_group_split


def prepare_data(dataset: Any, table: SampleTable, spec: MissingSpec, seed: int,
                 mask_dir: Path | None = None) -> PreparedData:
    """Split, mask, fit normalisation on observed train rows, encode tabular features."""
    split_rows = dataset.split_indices(table, seed)
    check_group_split(dataset.registry_name, table.groups, split_rows)  # also for splits a dataset overrides
    strata = stratum_labels(table.labels, dataset.task)
    real = np.stack([table.view_available.any(axis=1), table.tabular_available], axis=1)
    present: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    mar_values = mar_column_values(table, spec)
    n_classes = len(dataset.class_names) if table.labels.ndim == 1 else None
    for split, rows in split_rows.items():
        keep = drop_mask(table.ids[rows], strata[rows], spec.rate_for(split), spec.pattern, seed,
                         dataset.registry_name, split, spec.image_share,
                         mechanism=mask_mechanism(spec.mechanism_for(split), table.labels),
                         strength=spec.strength, n_classes=n_classes,
                         mar_values=None if mar_values is None else mar_values[rows])
        hashes[split] = mask_sha256(table.ids[rows], keep)
        if mask_dir is not None:
            files[split], _ = persist_mask(mask_dir, dataset.registry_name, split, spec, seed,
                                           table.ids[rows], keep)
        present[split] = keep & real[rows]
        counts[f"{split}_real_image_missing"] = int((~real[rows, IMAGE]).sum())
        counts[f"{split}_real_tabular_missing"] = int((~real[rows, TABULAR]).sum())
        counts[f"{split}_both_missing"] = int((~present[split].any(axis=1)).sum())

    train_rows = split_rows["train"]
    observed = present["train"][:, TABULAR]
    pre = TabularPreprocessor(table.columns).fit(table.numeric[train_rows][observed],
                                                 table.categorical[train_rows][observed])
    splits: dict[str, SplitData] = {}
    image_shape: tuple[int, ...] = ()
    for split, rows in split_rows.items():
        tab, unseen = pre.transform(table.numeric[rows], table.categorical[rows])
        counts[f"{split}_unseen_categories"] = unseen
        real_rows = real[rows]
        tab[~real_rows[:, TABULAR]] = 0.0
        pres = present[split]
        if split == "train":  # samples with no modality at all cannot be trained on
            usable = pres.any(axis=1)
            rows, tab, pres, real_rows = rows[usable], tab[usable], pres[usable], real_rows[usable]
        splits[split] = SplitData(split, rows, table.ids[rows], table.labels[rows], tab, pres, real_rows,
                                  table.view_available[rows], table, tuple(dataset.views))
    image_shape = probe_image_shape(table, dataset.views)
    for s in splits.values():
        s.image_shape = image_shape
    train_labels = table.labels[splits["train"].rows]
    if train_labels.ndim == 1:
        prior = np.bincount(train_labels.astype(np.int64), minlength=len(dataset.class_names)).astype(np.float64)
        prior = prior / max(prior.sum(), 1.0)
    else:
        prior = train_labels.mean(axis=0)
    info = DatasetInfo(
        name=dataset.registry_name, task=dataset.task, class_names=tuple(dataset.class_names),
        views=tuple(dataset.views), image_channels=image_shape[0], image_shape=tuple(image_shape[1:]),
        tabular_columns=tuple(table.columns), tabular_features=pre.feature_names,
        tabular_column_slices=pre.column_slices, primary_metric=dataset.primary_metric)
    return PreparedData(info, splits, hashes, files, counts, prior, table)


def mar_column_values(table: SampleTable, spec: MissingSpec) -> np.ndarray | None:
    """Raw values of ``spec.mar_column`` per row (NaN where the value or the whole tabular record
    is really missing: such samples get the centred rank 0), or None when no split uses ``mar``."""
    if "mar" not in spec.mechanisms():
        return None
    numeric = [c.name for c in table.columns if c.kind == "numeric"]  # table.numeric's columns, in order
    if spec.mar_column not in numeric:
        raise ConfigError(f"--mar-column (missing.mar_column): {spec.mar_column!r} is not a numeric tabular "
                          f"column of this dataset; numeric columns: {', '.join(numeric) or '(none)'}")
    values = np.asarray(table.numeric[:, numeric.index(spec.mar_column)], dtype=np.float64).copy()
    values[~np.asarray(table.tabular_available, dtype=bool)] = np.nan
    return values


def probe_image_shape(table: SampleTable, views: tuple[str, ...]) -> tuple[int, ...]:
    """(C, H, W) of the preprocessed images, from the first row that has any view."""
    for v, view in enumerate(views):
        rows = np.flatnonzero(table.view_available[:, v])
        if len(rows):
            return tuple(table.images.load(rows[:1], view, False).shape[1:])
    shape = table.extras.get("image_shape")
    if shape is None:
        raise DatasetLayoutError("no image is available in any row and the dataset declares no image_shape")
    return tuple(shape)
