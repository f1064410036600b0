"""A frozen ``RunSpec`` per grid cell; its hash is the resume key and the MLflow tag (HELM-style)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from benchmark.masks import MissingSpec

ORACLE_METHOD = "bayes_oracle"  # reference rows computed from a dataset's oracle, not a method


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    pattern: str
    protocol: str
    rate: float
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    config_hash: str

    @property
    def missing(self) -> MissingSpec:
        return MissingSpec(self.pattern, self.rate, self.protocol)  # type: ignore[arg-type]

    def key(self) -> str:
        """Deterministic resume key: identical specs give identical keys on every machine."""
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]

    def label(self) -> str:
        return f"{self.method} | {self.pattern}/{self.protocol} rate={self.rate:g} | seed={self.seed}"


def build_grid(cfg, with_oracle: bool) -> list[RunSpec]:
    """Every (missing spec, seed, method) cell of a config, in execution order."""
    specs = []
    t = cfg.training
    for spec in cfg.missing.specs():
        for seed in cfg.seeds:
            methods = list(cfg.methods) + ([ORACLE_METHOD] if with_oracle else [])
            for method in methods:
                is_ref = method == ORACLE_METHOD
                specs.append(RunSpec(
                    method=method, dataset=cfg.dataset.name, pattern=spec.pattern, protocol=spec.protocol,
                    rate=float(spec.rate), seed=int(seed), epochs=0 if is_ref else t.epochs,
                    batch_size=0 if is_ref else t.batch_size, lr=0.0 if is_ref else t.lr,
                    weight_decay=0.0 if is_ref else t.weight_decay,
                    config_hash=cfg.hash_for(method) if not is_ref else cfg.hash_for("")))
    return specs
