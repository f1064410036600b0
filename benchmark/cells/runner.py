"""The cell runner: one RunSpec -> prepared data -> trained model (or the oracle) -> MLflow child run.

Everything a cell uses comes from its RunSpec (budget, options, missing spec); the runner only adds
what is shared by a process: the dataset (loaded once) and the prepared data of the current
(missing spec, seed) group, reused by every method of that group so all of them see the same
masks (their SHA-256 is logged with every run).  It is picklable, so Ray can ship it to workers.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from benchmark.cells.evaluate import evaluate_method, leak_check, oracle_predictions, oracle_reference
from benchmark.cells.faults import after_epoch, before_artifact, with_faults
from benchmark.config.schema import DatasetSection
from benchmark.grid.fingerprint import git_commit
from benchmark.grid.spec import RunSpec
from benchmark.tracking.runs import tracked_run
from benchmark.tracking.store import KEY_TAG, LEAK_TAG, StorageError, Tracker, storage_error
from benchmark.training.device import machine_description, resolve_device, seed_everything
from benchmark.training.loop import predict, train_method
from core.batch import PreparedData
from core.calibration import PER_PATTERN, Calibrator, fit_calibrator
from core.metrics import CALIBRATION_METRICS, compute_metrics
from core.options import to_mapping
from datasets import create_dataset
from methods import create_method, get_method_class
from methods.base import FusionMethod

LOG = logging.getLogger(__name__)


@dataclass
class CellRunner:
    """Everything a process needs to run cells; the dataset and prepared data are cached per process."""

    dataset: DatasetSection
    results_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    threads: int = 0
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["cache"] = {}
        return state

    def loaded(self, seed: int = 0) -> tuple[Any, Any, Any]:
        """(dataset, table of the run seed, oracle): loaded once per process, and the table once per
        seed only for datasets whose data follow the run seed (one table in memory at a time)."""
        if "dataset" not in self.cache:
            dataset = create_dataset(self.dataset.name, self.dataset.root, **self.dataset.options)
            self.cache.update(dataset=dataset, oracle=dataset.oracle())
        dataset = self.cache["dataset"]
        table_key = int(seed) if dataset.seed_dependent_table else None
        if "table" not in self.cache or self.cache.get("table_key") != table_key:
            self.cache.update(table=dataset.table_for_seed(int(seed)), table_key=table_key)
        return dataset, self.cache["table"], self.cache["oracle"]

    def prepared(self, spec: RunSpec) -> tuple[PreparedData, dict[str, float]]:
        """Data of the spec's (missing spec, seed) group and the Bayes reference on its test split."""
        group = (spec.missing, spec.seed)
        if self.cache.get("group") != group:  # one group in memory at a time
            dataset, table, oracle = self.loaded(spec.seed)
            data = dataset.prepare(table, spec.missing, spec.seed, Path(self.results_dir) / "masks")
            reference = oracle_reference(oracle, data, spec.missing) if oracle is not None else {}
            self.cache.update(group=group, data=data, reference=reference)
        return self.cache["data"], self.cache["reference"]

    def __call__(self, spec: RunSpec, progress: Any = None) -> str:
        """Run one cell unless already finished; returns "done" or "skipped"."""
        if self.threads:
            torch.set_num_threads(self.threads)
        mlflow.set_tracking_uri(self.tracking_uri)
        tracker = Tracker(self.tracking_uri, Path(self.results_dir))
        if not tracker.claim(self.experiment_id, spec.key()):
            return "skipped"
        try:
            data, reference = self.prepared(spec)
            oracle = self.cache["oracle"] if spec.is_reference else None
            run_cell(spec, data, reference, self.parent_run_id, self.experiment_id, progress, oracle)
        except OSError as exc:  # the results directory cannot be written: one clear, fatal error
            error = storage_error(exc, [Path(self.results_dir)])
            if error is None:
                raise
            raise error from exc
        return "done"


def run_tags(spec: RunSpec, parent_id: str) -> dict[str, str]:
    display = "Bayes oracle" if spec.is_reference else (get_method_class(spec.method).display_name or spec.method)
    tags = {KEY_TAG: spec.key(), "method": spec.method, "method_display": display, "dataset": spec.dataset.name,
            "row_kind": "reference" if spec.is_reference else "method", "mlflow.parentRunId": parent_id,
            "machine": machine_description(spec.training.device), "tuned": "true" if spec.tuned else "false"}
    tags.update({k: str(v) for k, v in (spec.tuned or {}).items()})
    # What the run computed with (the leaderboard keeps one code/data fingerprint per row).
    tags.update({f"{k}_fingerprint": v for k, v in (spec.fingerprint or {}).items() if v})
    tags["mlflow.source.git.commit"] = git_commit()
    return tags


def run_cell(spec: RunSpec, data: PreparedData, reference: dict[str, float], parent_id: str, exp_id: str,
             progress: Any = None, oracle: Any = None) -> None:
    """Train and evaluate one cell (or log the oracle reference) as a child MLflow run."""
    # FINISHED only once the body (artifacts included) completed; else FAILED / KILLED with the reason.
    with tracked_run(exp_id, spec.label(), run_tags(spec, parent_id), nested=True):
        params = spec.params()
        if spec.options is not None:
            params.update({f"option.{k}": v for k, v in to_mapping(spec.options).items()})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({f"mask_sha256_{s}": h for s, h in data.mask_hashes.items()})
        mlflow.log_metrics({f"count_{k}": float(v) for k, v in data.counts.items()})
        for path in data.mask_files.values():
            log_artifact(spec, Path(path), artifact_path="masks")
        if oracle is not None:
            mlflow.log_metrics({k: float(v) for k, v in reference.items()})
            log_files(spec, {"predictions.npz": oracle_predictions(oracle, data, spec.missing)})
            return
        train_and_log(spec, data, reference, progress)


def train_and_log(spec: RunSpec, data: PreparedData, reference: dict[str, float], progress: Any) -> None:
    """The method part of a cell, inside its MLflow run: train, evaluate, log metrics and artifacts."""
    seed_everything(spec.seed)
    method = with_faults(create_method(spec.method, data.info, spec.encoders, options=spec.options), spec)
    epoch_task = progress.add_task(f"  epochs {spec.method}", total=spec.training.max_epochs) if progress else None

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        mlflow.log_metrics({k: float(v) for k, v in record.items() if np.isfinite(v)}, step=epoch)
        if progress is not None:
            progress.advance(epoch_task)
        after_epoch(spec)  # failure injection (tests): nothing unless MEDFUSION_FAULT/_FAIL_ONCE

    t0 = time.time()
    try:
        result = train_method(method, data, spec.training, spec.seed, on_epoch)
    finally:
        if progress is not None:
            progress.remove_task(epoch_task)
    train_seconds = time.time() - t0
    mlflow.log_param("precision_resolved", result.precision)  # what training.precision: auto ran in
    metrics: dict[str, float] = {"train_seconds": train_seconds, "best_epoch": float(result.best_epoch),
                                 "best_val": result.best_val, "epochs_trained": float(result.epochs_trained),
                                 "stopped_early": float(result.stopped_early)}
    metrics.update({f"best_epoch_{name}": float(e) for name, e in result.group_best_epochs.items()})
    calibrator, calibration_metrics = calibrate_on_validation(spec, method, data)
    metrics.update(calibration_metrics)
    t1 = time.time()
    test_metrics, predictions = evaluate_method(method, data, resolve_device(spec.training.device),
                                                spec.training.eval_batch_size, calibrator)
    metrics.update(test_metrics)
    metrics["eval_seconds"] = time.time() - t1
    metrics.update({f"bayes_{k}": v for k, v in reference.items()})  # the Bayes reference on this test set
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
    leak = leak_check(test_metrics, reference)
    if leak:  # marked in every leaderboard and printed at the end of the grid
        mlflow.set_tags({LEAK_TAG: "true", f"{LEAK_TAG}_reason": leak})
    log_files(spec, {"predictions.npz": predictions, "model_state_dict.pt": method.state_dict(),
                           "history.json": result.history})


def calibrate_on_validation(spec: RunSpec, method: FusionMethod, data: PreparedData) -> tuple[Calibrator, dict[str, float]]:
    """The shared post-hoc step (``spec.evaluation.calibration``), fitted on the validation split
    under its mask after model selection — the test split never reaches ``fit_calibrator``.

    Returns the calibrator and what to log: its temperature(s), every validation metric after it
    (``val_calibrated_*``) and the proper scores before it (``val_uncalibrated_ece``, ...).  The
    validation probabilities are computed in fp32, like the test ones (``evaluate_method``)."""
    val = data.splits["val"]
    kind = spec.evaluation.calibration
    if len(val) == 0:  # nothing to fit on: scored as returned
        return Calibrator("none", data.info.task), {}
    probs = predict(method, val, data.train_prior, resolve_device(spec.training.device),
                    spec.training.eval_batch_size)
    calibrator = fit_calibrator(kind, data.info.task, val.labels, probs, val.present)
    if kind in PER_PATTERN:
        LOG.info("%s: per-pattern calibration fitted for %d pattern(s) (%s), the others use the global one",
                 spec.label(), len(calibrator.fitted), ", ".join(calibrator.fitted) or "none")
    out = dict(calibrator.metrics())
    before = compute_metrics(data.info.task, val.labels, probs)
    after = compute_metrics(data.info.task, val.labels, calibrator.apply(probs, val.present))
    out.update({f"val_uncalibrated_{k}": before[k] for k in CALIBRATION_METRICS if k in before})
    out.update({f"val_calibrated_{k}": v for k, v in after.items()})
    return calibrator, out


def log_files(spec: RunSpec, files: dict[str, Any]) -> None:
    """Write each object (``.npz``: arrays, ``.pt``: a state dict, ``.json``: JSON) to a temporary
    file and log it; every artifact is logged before the run may end FINISHED (``tracked_run``)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        try:
            for name, value in files.items():
                path = Path(tmp) / name
                if name.endswith(".npz"):
                    np.savez_compressed(path, **value)
                elif name.endswith(".pt"):
                    torch.save(value, path)
                else:
                    path.write_text(json.dumps(value, indent=1))
                paths.append(path)
        except OSError as exc:
            raise StorageError(f"cannot write the cell's artifacts to the temporary folder {tmp}: "
                               f"{exc.strerror or exc}") from exc
        for path in paths:
            log_artifact(spec, path)


def log_artifact(spec: RunSpec, path: Path, artifact_path: str | None = None) -> None:
    """``mlflow.log_artifact``, or one :class:`StorageError` naming where the file should have gone."""
    uri = mlflow.get_artifact_uri(artifact_path)
    destination = f"{uri[len('file://'):] if uri.startswith('file://') else uri}/{path.name}"
    try:
        before_artifact(spec, path.name, destination)
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
    except OSError as exc:
        raise StorageError(f"cannot write the artifact {exc.filename or destination}: {exc.strerror or exc}") from exc
