"""The test predictions a run logged (``predictions.npz``), read back for the DeLong tests."""
from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from benchmark.summary.load import as_text


class PredictionStore:
    """Reads ``predictions.npz`` artifacts once per build (cached); a run without one gives None.

    A local artifact store (the default ``file:`` location next to the SQLite file) is read in
    place; any other store goes through ``mlflow.artifacts.download_artifacts``.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="leaderboard-")
        self._cache: dict[str, dict[str, np.ndarray] | None] = {}

    def get(self, run: pd.Series) -> dict[str, np.ndarray] | None:
        run_id = str(run["run_id"])
        if run_id not in self._cache:
            self._cache[run_id] = self._read(run_id, as_text(run.get("artifact_uri")))
        return self._cache[run_id]

    def _read(self, run_id: str, artifact_uri: str | None) -> dict[str, np.ndarray] | None:
        try:
            parsed = urlparse(artifact_uri) if artifact_uri else None
            if parsed is not None and parsed.scheme in ("file", "") and artifact_uri:
                path = Path(unquote(parsed.path)) / "predictions.npz"
            else:
                dst = Path(self._tmp.name) / run_id
                dst.mkdir(exist_ok=True)
                source = f"{artifact_uri}/predictions.npz" if artifact_uri else None
                path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst)) if source
                            else mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="predictions.npz",
                                                                     dst_path=str(dst)))
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (MlflowException, OSError, ValueError):
            return None

    def close(self) -> None:
        self._tmp.cleanup()


def binary_scores(pred: dict[str, np.ndarray],
                  key: str = "probs_mask") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(ids, labels, P(class 1)) of a binary task's predictions; None for other tasks."""
    if key not in pred or "ids" not in pred or "labels" not in pred:
        return None
    labels, probs = np.asarray(pred["labels"]), np.asarray(pred[key])
    if labels.ndim != 1 or probs.ndim != 2 or probs.shape[1] != 2:
        return None
    return np.asarray(pred["ids"]).astype(str), labels.astype(int), probs[:, 1].astype(np.float64)
