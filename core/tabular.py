"""Train-only tabular normalisation: numeric z-scoring with NaN imputation + indicator, one-hots."""
from __future__ import annotations

import numpy as np

from core.contract import TabularColumn


class TabularPreprocessor:
    """Numeric z-scoring with NaN imputation + indicator, and one-hot categoricals.

    Fitted on observed training rows only. Categorical level 0 = unknown: its one-hot is all zeros.
    """

    def __init__(self, columns: tuple[TabularColumn, ...]) -> None:
        self.columns = columns
        self.numeric_cols = [c for c in columns if c.kind == "numeric"]
        self.categorical_cols = [c for c in columns if c.kind == "categorical"]

    def fit(self, numeric: np.ndarray, categorical: np.ndarray) -> "TabularPreprocessor":
        numeric = np.asarray(numeric, dtype=np.float64).reshape(len(numeric), len(self.numeric_cols))
        with np.errstate(all="ignore"):
            mean = np.nanmean(numeric, axis=0) if len(numeric) else np.zeros(numeric.shape[1])
            std = np.nanstd(numeric, axis=0) if len(numeric) else np.ones(numeric.shape[1])
        self.mean = np.nan_to_num(mean, nan=0.0)
        self.std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.nan_indicator = np.isnan(numeric).any(axis=0) if len(numeric) else np.zeros(numeric.shape[1], bool)
        self.vocab: list[tuple[str, ...]] = []
        for j, col in enumerate(self.categorical_cols):
            if col.categories:
                self.vocab.append(tuple(col.categories))
            else:
                seen = {str(v) for v in categorical[:, j] if v is not None and v == v}
                self.vocab.append(tuple(sorted(seen)))
        names, slices = [], []
        for j, col in enumerate(self.numeric_cols):
            start = len(names)
            names.append(col.name)
            if self.nan_indicator[j]:
                names.append(f"{col.name}__isnan")
            slices.append((start, len(names)))
        for col, vocab in zip(self.categorical_cols, self.vocab):
            start = len(names)
            names += [f"{col.name}={level}" for level in vocab]
            slices.append((start, len(names)))
        self.feature_names = tuple(names)
        self.column_slices = tuple(slices)
        return self

    def transform(self, numeric: np.ndarray, categorical: np.ndarray) -> tuple[np.ndarray, int]:
        """Encoded (N, F) float32 and the number of unseen categorical values (all-zero one-hot)."""
        n = len(numeric)
        numeric = np.asarray(numeric, dtype=np.float64).reshape(n, len(self.numeric_cols))
        parts = []
        for j in range(numeric.shape[1]):
            col = numeric[:, j]
            isnan = np.isnan(col)
            parts.append(((np.where(isnan, self.mean[j], col) - self.mean[j]) / self.std[j])[:, None])
            if self.nan_indicator[j]:
                parts.append(isnan[:, None].astype(np.float64))
        unseen = 0
        for j, vocab in enumerate(self.vocab):
            index = {level: i for i, level in enumerate(vocab)}
            onehot = np.zeros((n, len(vocab)))
            for i, value in enumerate(categorical[:, j]):
                if value is None or value != value:
                    continue
                pos = index.get(str(value))
                if pos is None:
                    unseen += 1
                else:
                    onehot[i, pos] = 1.0
            parts.append(onehot)
        out = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
        return out.astype(np.float32), unseen
