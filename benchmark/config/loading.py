"""YAML + CLI -> one validated, frozen :class:`~benchmark.config.schema.BenchmarkConfig`.

Layering (later wins): ``configs/default.yaml`` (or ``--config``) -> the dataset preset
``configs/datasets/<name>.yaml`` -> each method's defaults ``configs/methods/<name>.yaml`` ->
``method_options`` in the config -> CLI flags.  Validation happens here, once: an unknown key,
method, dataset or timm model, or a bad value, raises :class:`ConfigError` naming file and key.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from benchmark.config.schema import METHOD_TRAINING_KEYS, BenchmarkConfig
from core.errors import ConfigError
from core.options import from_mapping, to_mapping
from core.registry import UnknownNameError
from datasets import get_dataset_class
from methods import get_method_class, list_methods

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


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


METHOD_FILE_KEYS = ("display_name", "options", "search_space", "training")


def method_file(name: str) -> tuple[Path, dict[str, Any]]:
    """``configs/methods/<name>.yaml`` and its content (empty if the file does not exist)."""
    path = CONFIG_DIR / "methods" / f"{name}.yaml"
    if not path.exists():
        return path, {}
    data = read_yaml(path)
    unknown = sorted(set(data) - set(METHOD_FILE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'; known: {', '.join(METHOD_FILE_KEYS)}")
    return path, data


def method_defaults(name: str) -> dict[str, Any]:
    """``options`` from ``configs/methods/<name>.yaml`` (empty if the file does not exist)."""
    return dict(method_file(name)[1].get("options") or {})


def checked_recipe(recipe: Mapping[str, Any], where: str) -> dict[str, float]:
    """A method's own optimiser values: only ``lr`` and ``weight_decay`` -- a per-method budget
    (epochs, patience, batch size) would make the comparison unfair."""
    bad = sorted(set(recipe) - set(METHOD_TRAINING_KEYS))
    if bad:
        raise ConfigError(f"{where}.{bad[0]}: a method may set only {', '.join(METHOD_TRAINING_KEYS)} "
                          "(the epoch budget, patience and batch size are shared by every method)")
    for key, value in recipe.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (key == "lr" and value == 0):
            raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
    return {k: float(v) for k, v in recipe.items()}


def method_training(name: str) -> dict[str, float]:
    """The method recipe's optimiser values (``training:`` in ``configs/methods/<name>.yaml``)."""
    path, data = method_file(name)
    return checked_recipe(dict(data.get("training") or {}), f"{path}: training")


def check_budget(cfg: BenchmarkConfig, method: str, cls: Any, options: Any, where: str) -> None:
    """A budget too small for a method's defining stages is an error naming the minimum."""
    minimum, reason = cls.minimum_epochs(options)
    if cfg.training.max_epochs < minimum:
        raise ConfigError(f"{where}: training.max_epochs = {cfg.training.max_epochs} is too small for method "
                          f"'{method}': it needs at least {minimum} epochs ({reason})")


def method_search_space(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / "methods" / f"{name}.yaml"
    return dict(read_yaml(path).get("search_space") or {}) if path.exists() else {}


def read_layered(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file with its ``base:`` (another config file, relative to this one) underneath:
    ``base: ../default.yaml`` plus a few keys is a variant of the default config, not a copy."""
    raw = read_yaml(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: expected the path of another config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: base: {base} includes itself")
    if not base_path.exists():
        raise ConfigError(f"{path}: base: config file {base_path} does not exist")
    return deep_merge(read_layered(base_path, seen + (path.resolve(),)), raw)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> BenchmarkConfig:
    """Read, layer and validate the configuration. ``overrides`` uses the YAML structure."""
    path = Path(path) if path else DEFAULT_CONFIG
    raw = read_layered(path)
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
    if "epochs" in (merged.get("training") or {}):
        raise ConfigError(f"{where}: training.epochs was renamed training.max_epochs (the shared budget is now "
                          "max_epochs with early stopping: patience, min_epochs)")
    cfg = from_mapping(BenchmarkConfig, merged, where)
    try:
        dataset_cls = get_dataset_class(cfg.dataset.name)
        method_classes = {m: get_method_class(m) for m in cfg.methods}
    except UnknownNameError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    from_mapping(dataset_cls.Options, cfg.dataset.options, f"{where}: dataset '{cfg.dataset.name}' options")
    unknown = sorted(set(cfg.method_options) - set(cfg.methods))
    unknown += sorted(set(cfg.method_training or {}) - set(cfg.methods))
    extra = [m for m in unknown if m not in list_methods()]
    if extra:
        raise ConfigError(f"{where}.method_options: unknown method '{extra[0]}'; known: {', '.join(list_methods())}")
    resolved, recipes = {}, {}
    for method, cls in method_classes.items():
        opts = deep_merge(method_defaults(method), cfg.method_options.get(method) or {})
        resolved[method] = from_mapping(cls.Options, opts, f"{where}: method '{method}' options")
        check_budget(cfg, method, cls, resolved[method], where)
        # Layering: the method file's recipe -> the config's method_training -> a CLI --lr, which
        # applies to every method alike.
        given = checked_recipe(dict((cfg.method_training or {}).get(method) or {}),
                               f"{where}: method_training.{method}")
        recipe = {**method_training(method), **given}
        recipes[method] = {k: v for k, v in recipe.items() if k not in (overrides.get("training") or {})}
    return replace(cfg, method_options=resolved, method_training=recipes)


def dump_config(cfg: BenchmarkConfig) -> str:
    return yaml.safe_dump(to_mapping(cfg), sort_keys=False)
