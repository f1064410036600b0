"""YAML + CLI -> one validated, frozen :class:`BenchmarkConfig`.

Layering (later wins): ``configs/default.yaml`` (or ``--config``) -> the dataset preset
``configs/datasets/<name>.yaml`` -> each method's defaults ``configs/methods/<name>.yaml`` ->
``method_options`` in the config -> CLI flags.  Validation happens here, once: an unknown key,
method, dataset or timm model, or a bad value, raises :class:`ConfigError` naming file and key.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchmark.encoders import EncoderConfig
from benchmark.errors import ConfigError
from benchmark.masks import DEFAULT_RATES, PATTERNS, PROTOCOLS, MissingSpec
from benchmark.options import from_mapping, to_mapping
from benchmark.registry import UnknownNameError
from benchmark.training import TrainingConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass(frozen=True)
class DatasetSection:
    name: str = "synthetic"
    root: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MissingSection:
    pattern: str = "mixed"
    protocol: str = "both"
    rates: tuple[float, ...] = DEFAULT_RATES
    image_share: float = 0.5

    def validate(self, where: str) -> None:
        if not self.rates:
            raise ConfigError(f"{where}.rates: at least one rate is needed")
        for rate in self.rates:  # MissingSpec checks pattern, protocol and the range
            MissingSpec(self.pattern, rate, self.protocol, self.image_share)  # type: ignore[arg-type]
        if len(set(self.rates)) != len(self.rates):
            raise ConfigError(f"{where}.rates: duplicate rate in {list(self.rates)}")

    def specs(self) -> list[MissingSpec]:
        return [MissingSpec(self.pattern, r, self.protocol, self.image_share)  # type: ignore[arg-type]
                for r in self.rates]


@dataclass(frozen=True)
class ExecutionSection:
    """How cells are executed; never part of a run's identity (config hash)."""

    executor: str = "local"          # local | ray
    workers: int = 1                 # ray: parallel tasks on a local Ray instance
    ray_address: str | None = None   # ray: join an existing cluster ("auto" = one from `ray start`)
    retries: int = 2                 # ray: retries of a failed task before it is reported
    gpus_per_task: float = 0.0       # ray: GPUs declared per task
    threads_per_worker: int = 1      # ray: torch threads per task

    def validate(self, where: str) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"{where}.executor: {self.executor!r} is not one of 'local', 'ray'")
        if self.workers < 1 or self.retries < 0 or self.threads_per_worker < 1:
            raise ConfigError(f"{where}: workers and threads_per_worker must be >= 1, retries >= 0")


@dataclass(frozen=True)
class BenchmarkConfig:
    dataset: DatasetSection = field(default_factory=DatasetSection)
    methods: tuple[str, ...] = ("tabular_sklearn", "image_only", "tabular_only", "early_fusion", "late_fusion")
    method_options: dict = field(default_factory=dict)   # method -> options (resolved, validated)
    missing: MissingSection = field(default_factory=MissingSection)
    seeds: tuple[int, ...] = (0, 1, 2)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    results_dir: str = "results"
    tracking_uri: str | None = None
    execution: ExecutionSection = field(default_factory=ExecutionSection)

    def validate(self, where: str) -> None:
        if not self.methods:
            raise ConfigError(f"{where}.methods: at least one method is needed")
        if not self.seeds:
            raise ConfigError(f"{where}.seeds: at least one seed is needed")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"{where}.methods: duplicate method in {list(self.methods)}")

    def options_for(self, method: str) -> dict[str, Any]:
        return dict(self.method_options.get(method, {}))

    def resolved_options(self, method: str) -> dict[str, Any]:
        """The method's options with its code defaults filled in (what the run will use).

        Hashing these rather than the configured keys makes a changed default in a method's
        ``Options`` a different run, so resume never reuses results of other settings.
        """
        if not method:
            return {}
        from methods import get_method_class
        options_type = get_method_class(method).Options
        return to_mapping(from_mapping(options_type, self.options_for(method), f"method '{method}' options"))

    def hash_for(self, method: str) -> str:
        """Hash of everything besides the grid coordinates that changes a run's result."""
        payload = {"dataset": to_mapping(self.dataset), "method_options": self.resolved_options(method),
                   "encoders": to_mapping(self.encoders), "training": to_mapping(self.training),
                   "image_share": self.missing.image_share}
        payload["training"].pop("device", None)
        payload["training"].pop("threads", None)
        payload["dataset"].pop("root", None)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def method_defaults(name: str) -> dict[str, Any]:
    """``options`` from ``configs/methods/<name>.yaml`` (empty if the file does not exist)."""
    path = CONFIG_DIR / "methods" / f"{name}.yaml"
    if not path.exists():
        return {}
    data = read_yaml(path)
    unknown = sorted(set(data) - {"options", "search_space", "display_name"})
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'; known: display_name, options, search_space")
    return dict(data.get("options") or {})


def method_search_space(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / "methods" / f"{name}.yaml"
    return dict(read_yaml(path).get("search_space") or {}) if path.exists() else {}


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> BenchmarkConfig:
    """Read, layer and validate the configuration. ``overrides`` uses the YAML structure."""
    from datasets import get_dataset_class
    from methods import get_method_class

    path = Path(path) if path else DEFAULT_CONFIG
    raw = read_yaml(path)
    overrides = dict(overrides or {})
    where = str(path)
    # The dataset may be given as a name; its preset file supplies defaults (options, encoder
    # overrides) that the config file and the CLI override.  A config file's dataset options
    # only apply when the CLI does not switch to another dataset.
    def as_section(value: Any) -> dict[str, Any]:
        return {"name": value} if isinstance(value, str) else dict(value or {})

    file_section = as_section(raw.get("dataset", "synthetic"))
    cli_section = as_section(overrides.pop("dataset", None)) if "dataset" in overrides else {}
    name = cli_section.get("name") or file_section.get("name") or "synthetic"
    if file_section.get("name", name) != name:
        file_section = {"name": name}
    body = {k: v for k, v in raw.items() if k != "dataset"}
    body["dataset"] = deep_merge(file_section, cli_section)
    preset_path = CONFIG_DIR / "datasets" / f"{name}.yaml"
    preset = read_yaml(preset_path) if preset_path.exists() else {}
    if "dataset" in preset:
        preset["dataset"] = as_section(preset["dataset"])
    merged = deep_merge(deep_merge(preset, body), overrides)
    merged["dataset"]["name"] = name
    cfg = from_mapping(BenchmarkConfig, merged, where)
    try:
        dataset_cls = get_dataset_class(cfg.dataset.name)
        method_classes = {m: get_method_class(m) for m in cfg.methods}
    except UnknownNameError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    from_mapping(dataset_cls.Options, cfg.dataset.options, f"{where}: dataset '{cfg.dataset.name}' options")
    unknown = sorted(set(cfg.method_options) - set(cfg.methods))
    extra = [m for m in unknown if m not in _all_methods()]
    if extra:
        raise ConfigError(f"{where}.method_options: unknown method '{extra[0]}'; known: {', '.join(_all_methods())}")
    resolved = {}
    for method, cls in method_classes.items():
        opts = deep_merge(method_defaults(method), cfg.method_options.get(method) or {})
        from_mapping(cls.Options, opts, f"{where}: method '{method}' options")
        resolved[method] = opts
    return replace(cfg, method_options=resolved)


def _all_methods() -> list[str]:
    from methods import list_methods
    return list_methods()


def dump_config(cfg: BenchmarkConfig) -> str:
    return yaml.safe_dump(to_mapping(cfg), sort_keys=False)


__all__ = ["BenchmarkConfig", "DatasetSection", "MissingSection", "load_config", "dump_config",
           "PATTERNS", "PROTOCOLS", "method_search_space", "read_yaml", "deep_merge"]
