"""A frozen ``RunSpec`` per grid cell, and the one definition of what a run *is* (HELM-style).

:meth:`RunSpec.identity` is the single function that says which settings make two runs the same
run: every other fingerprint derives from it — the resume key (:meth:`RunSpec.key`, MLflow tag
``runspec_key``), the config hash that groups a leaderboard row (:meth:`RunSpec.config_hash`:
the identity without the grid coordinates), the tuning study fingerprint and the tuned-file
check (``benchmark.tuning``: the identity without the seed, or without the grid coordinates,
the fingerprints and the tuned keys).  The
cell runner reads everything it needs from the RunSpec (budget, options, missing spec), so a
tuned run cannot train under settings its key does not describe.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from benchmark.config.schema import DatasetSection, EvaluationConfig, TrainingConfig
from core.encoders import EncoderConfig
from core.masks import MissingSpec
from core.options import to_mapping

ORACLE_METHOD = "bayes_oracle"  # reference rows computed from a dataset's oracle, not a method
# How every trained model is evaluated on the test split: the configured mask, everything really
# available (the mask undone), and each modality removed for every sample.
EVAL_SCENARIOS: tuple[str, ...] = ("mask", "full", "image_missing", "tabular_missing")
# Training fields that say where and how fast a run goes, never what it computes.
NON_IDENTITY_TRAINING: tuple[str, ...] = ("device", "threads", "eval_batch_size")
# The grid coordinates a leaderboard lays out (rows share everything else: the config hash).
COORDINATES: tuple[str, ...] = ("missing.pattern", "missing.protocol", "missing.rate", "seed")


def metric_prefix(scenario: str) -> str:
    """Metric name prefix of an evaluation scenario: ``test_auc`` for the mask, ``full_auc``..."""
    return "test" if scenario == "mask" else scenario


def digest(payload: Any, length: int) -> str:
    """Stable hex digest of a JSON-able payload (sorted keys), the same on every machine."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def drop_keys(payload: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``payload`` without the dotted ``keys`` (e.g. ``missing.rate``)."""
    out = json.loads(json.dumps(payload, default=str))
    for dotted in keys:
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(last, None)
    return out


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: everything the cell runner needs, nothing it may look up elsewhere."""

    method: str
    dataset: DatasetSection
    missing: MissingSpec
    seed: int
    training: TrainingConfig
    encoders: EncoderConfig
    options: Any = None              # the method's validated Options instance (None for the oracle)
    tuned: Mapping[str, Any] | None = None  # provenance of --tuned parameters (trials, file, ...)
    fingerprint: Mapping[str, str] | None = None  # code, data, weights (benchmark.grid.fingerprint)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # post-hoc calibration

    @property
    def is_reference(self) -> bool:
        return self.method == ORACLE_METHOD

    def identity(self) -> dict[str, Any]:
        """What makes this run this run: method, resolved options, dataset, missing spec, seed,
        budget, encoders, the post-hoc calibration, whether the options came from tuning, and the
        fingerprints of the code, data and weights it computes with.  Nothing else may change a result, so nothing else is
        in it (the device, the thread count and the data root's path are not)."""
        training = {k: v for k, v in to_mapping(self.training).items() if k not in NON_IDENTITY_TRAINING}
        dataset = to_mapping(self.dataset)
        dataset.pop("root", None)
        return {"method": self.method,
                "options": to_mapping(self.options) if self.options is not None else {},
                "dataset": dataset,
                "missing": self.missing.identity(),  # mechanism fields only when not plain mcar
                "seed": int(self.seed),
                "training": {} if self.is_reference else training,
                "encoders": {} if self.is_reference else to_mapping(self.encoders),
                "evaluation": {} if self.is_reference else to_mapping(self.evaluation),
                "tuned": bool(self.tuned),
                "fingerprint": dict(self.fingerprint or {})}

    def key(self) -> str:
        """Deterministic resume key: identical identities give identical keys on every machine."""
        return digest(self.identity(), 24)

    def config_hash(self) -> str:
        """The identity without the grid coordinates and the fingerprints: runs of one leaderboard
        row share it (the leaderboard keeps one code/data fingerprint per row, see ``summary``)."""
        return digest(drop_keys(self.identity(), COORDINATES + ("fingerprint",)), 16)

    def label(self) -> str:
        m = self.missing
        mechanism = f" {m.mechanism_label}" if m.mechanism_label else ""
        return f"{self.method} | {m.pattern}/{m.protocol}{mechanism} rate={m.rate:g} | seed={self.seed}"

    def params(self) -> dict[str, Any]:
        """The flat MLflow params of the run (the leaderboard reads these names)."""
        t = self.training
        ref = self.is_reference
        return {"method": self.method, "dataset": self.dataset.name, "pattern": self.missing.pattern,
                "protocol": self.missing.protocol, "rate": float(self.missing.rate), "seed": int(self.seed),
                "max_epochs": 0 if ref else t.max_epochs,
                "patience": 0 if ref else t.patience, "min_epochs": 0 if ref else t.min_epochs, "batch_size": 0 if ref else t.batch_size,
                "lr": 0.0 if ref else t.lr, "weight_decay": 0.0 if ref else t.weight_decay,
                "config_hash": self.config_hash(), "image_share": self.missing.image_share,
                "mechanism": self.missing.mechanism, "test_mechanism": self.missing.mechanism_for("test"),
                "strength": float(self.missing.strength), "mar_column": self.missing.mar_column or "",
                "encoder_image": self.encoders.image.model, "encoder_tabular_dim": self.encoders.tabular.dim,
                "calibration": "none" if ref else self.evaluation.calibration}
