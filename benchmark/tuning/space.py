"""Search spaces: one tunable parameter (:class:`ParamSpec`), a method's declared space, and the
step from a trial's flat parameters to validated ``Options`` and budget.

A method's space lives next to its defaults (``search_space:`` in ``configs/methods/<name>.yaml``,
else the method class's ``search_space``); the shared space (``training.<field>``) comes from
``configs/tune.yaml`` (:mod:`benchmark.tuning.settings`).  Every space is checked when it is
loaded: an unknown key, or a value the space can produce that the method's ``Options`` (or
``TrainingConfig``) would reject, raises :class:`ConfigError` naming the file and key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from benchmark.config.loading import CONFIG_DIR, read_yaml
from benchmark.config.schema import BenchmarkConfig, TrainingConfig
from core.errors import ConfigError
from core.options import from_mapping, to_mapping
from methods import get_method_class


@dataclass(frozen=True)
class _RawParam:
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter: ``name`` is ``options.<option>`` or ``training.<field>``."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    def suggest(self, trial: Any) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def probe_values(self) -> list[Any]:
        """Values that bound what the space can produce (checked against the method's Options)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


def parse_param(name: str, spec: Any, where: str) -> ParamSpec:
    """``{type, low, high, log, choices}`` -> :class:`ParamSpec`; bad type or range -> ConfigError."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{type: float|int|categorical, ...}}, got {spec!r}")
    raw = from_mapping(_RawParam, spec, where)
    if raw.type == "categorical":
        if raw.low is not None or raw.high is not None or raw.log:
            raise ConfigError(f"{where}: a categorical parameter takes 'choices' only (no low/high/log)")
        if not raw.choices:
            raise ConfigError(f"{where}.choices: a non-empty list is needed")
        for c in raw.choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{where}.choices: {c!r} is not a scalar (Optuna stores bool, int, float, str, null)")
        if len(set(map(repr, raw.choices))) != len(raw.choices):
            raise ConfigError(f"{where}.choices: duplicate value in {raw.choices}")
        return ParamSpec(name, "categorical", choices=tuple(raw.choices))
    if raw.choices is not None:
        raise ConfigError(f"{where}: 'choices' is for type categorical; a {raw.type} takes low/high")
    if raw.low is None or raw.high is None:
        raise ConfigError(f"{where}: type {raw.type} needs both 'low' and 'high'")
    low, high = raw.low, raw.high
    if raw.type == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}: type int needs integer low/high, got {low!r}, {high!r}")
        low, high = int(low), int(high)
    if not math.isfinite(low) or not math.isfinite(high) or low >= high:
        raise ConfigError(f"{where}: needs finite low < high, got low={low!r}, high={high!r}")
    if raw.log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0, got low={low!r}")
    return ParamSpec(name, raw.type, low=low, high=high, log=raw.log)


def checked_param(name: str, spec: Any, place: str, target: type, base: Mapping[str, Any],
                  target_where: str, what: str) -> ParamSpec:
    """Parse one entry and check every bounding value against ``target`` (an ``Options`` class
    or ``TrainingConfig``) on top of ``base``, so a space cannot produce a value the run rejects."""
    p = parse_param(name, spec, place)
    for value in p.probe_values():
        try:
            from_mapping(target, {**base, p.key: value}, target_where)
        except ConfigError as exc:
            raise ConfigError(f"{place}: value {value!r} is not a valid {what}: {exc}") from None
    return p


def method_space(method: str, base_options: Mapping[str, Any] | None = None,
                 config_dir: Path = CONFIG_DIR) -> dict[str, ParamSpec]:
    """A method's declared space: ``search_space`` of ``configs/methods/<method>.yaml`` if the file
    has that key (``{}`` there means: tune the shared parameters only), else the class attribute.

    Every key must be ``options.<name>`` of the method's ``Options`` and every value the space can
    produce must pass the method's option validation; otherwise ConfigError names file and key.
    """
    cls = get_method_class(method)
    path = Path(config_dir) / "methods" / f"{method}.yaml"
    raw = read_yaml(path) if path.exists() else {}
    if "search_space" in raw:
        space, where = raw["search_space"] or {}, str(path)
    else:
        space, where = dict(getattr(cls, "search_space", {}) or {}), f"{cls.__module__}.{cls.__name__}.search_space"
    if not isinstance(space, Mapping):
        raise ConfigError(f"{where}: search_space must be a mapping 'options.<name>' -> spec, got {space!r}")
    option_fields = sorted(f.name for f in dataclasses.fields(cls.Options)) if dataclasses.is_dataclass(cls.Options) else []
    base = dict(base_options or {})
    out: dict[str, ParamSpec] = {}
    for name, spec in space.items():
        place = f"{where}: search_space.{name}"
        section, _, key = str(name).partition(".")
        if section != "options":
            raise ConfigError(f"{place}: a method space tunes 'options.<name>' only; shared training "
                              f"parameters belong in configs/tune.yaml shared_space")
        if key not in option_fields:
            raise ConfigError(f"{place}: unknown option '{key}' of method '{method}'; known: "
                              f"{', '.join(option_fields) or '(none)'}")
        out[name] = checked_param(name, spec, place, cls.Options, base, f"method '{method}' options", "option")
    return out


def space_mapping(space: Mapping[str, ParamSpec]) -> dict[str, dict[str, Any]]:
    """A space as plain data (hashed into the study fingerprint, logged as an MLflow param)."""
    return {k: dataclasses.asdict(v) for k, v in space.items()}


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat trial params -> (method options, training overrides)."""
    options = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("options.")}
    training = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("training.")}
    return options, training


def default_params(cfg: BenchmarkConfig, method: str, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The config's own values for the searched parameters (those inside the space)."""
    options, training = to_mapping(cfg.options_for(method)), to_mapping(cfg.training_for(method))
    out = {}
    for name, p in space.items():
        source = options if p.section == "options" else training
        if p.key in source and p.contains(source[p.key]):
            out[name] = source[p.key]
    return out


def resolve_params(cfg: BenchmarkConfig, method: str, options: Mapping[str, Any], training: Mapping[str, Any],
                   where: str) -> tuple[Any, TrainingConfig]:
    """The config's method ``Options`` and budget with tuned values on top, validated (once: when a
    trial's parameters are drawn, or when a tuned file is loaded)."""
    merged = {**to_mapping(cfg.options_for(method)), **options}
    return (from_mapping(get_method_class(method).Options, merged, f"{where}: options"),
            from_mapping(TrainingConfig, {**to_mapping(cfg.training_for(method)), **training}, f"{where}: training"))
