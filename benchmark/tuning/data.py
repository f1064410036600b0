"""The data tuning sees: train and validation rows only.

The test split is never touched: the tuning data hold the train and validation rows only, minus
every row that is a test row for any evaluation seed (this matters for datasets without an
official split, whose test rows change with the seed).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.batch import PreparedData
from core.errors import ConfigError
from core.masks import MissingSpec
from datasets.preparation import prepare_data


class TuningView:
    """The dataset as tuning sees it: its train and val rows, minus every row that is a test row
    for the tuning seed or any evaluation seed.  ``prepare_data`` on this view never builds a
    test split, so no test image is loaded and no test record is encoded.

    Pass the view itself to ``prepare_data``: ``view.prepare(...)`` would reach the wrapped
    dataset through ``__getattr__`` and use its own split, held-out rows included."""

    def __init__(self, dataset: Any, table: Any, evaluation_seeds: Sequence[int]) -> None:
        self._dataset = dataset
        held_out = [dataset.split_indices(table, int(s))["test"] for s in evaluation_seeds]
        self.held_out = np.unique(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def split_indices(self, table: Any, seed: int) -> dict[str, np.ndarray]:
        rows = self._dataset.split_indices(table, seed)
        excluded = np.union1d(self.held_out, rows["test"])
        return {"train": np.setdiff1d(rows["train"], excluded), "val": np.setdiff1d(rows["val"], excluded)}


def prepare_tuning_data(dataset: Any, table: Any, mspec: MissingSpec, seeds: Sequence[int],
                        evaluation_seeds: Sequence[int]) -> dict[int, PreparedData]:
    """PreparedData (train + val only) per tuning seed, shared by every trial and method."""
    view = TuningView(dataset, table, evaluation_seeds)
    out = {}
    for seed in seeds:
        # A dataset whose data follow the run seed (synthetic, seed: run) gives each tuning seed its
        # own sample; its official split keeps the evaluation seeds' test rows out all the same.
        seed_table = dataset.table_for_seed(int(seed)) if dataset.seed_dependent_table else table
        data = prepare_data(view, seed_table, mspec, int(seed), None)
        assert "test" not in data.splits, "tuning data must not contain a test split"
        for split in ("train", "val"):
            if len(data.splits[split]) == 0:
                raise ConfigError(f"tuning seed {seed}: no {split} rows left after holding out the test rows "
                                  f"of the evaluation seeds; tuning needs a validation split")
        out[int(seed)] = data
    return out
