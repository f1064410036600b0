"""A suite file (``configs/suites/<name>.yaml``) read, validated and expanded into benchmark configs.

Why a suite: the scenario suite (scenarios spec, part C) runs every registered method over several
synthetic scenarios, each with its own dataset options, missingness mechanism and grid.  Each
entry is a *normal* benchmark config, layered (later wins)

    the suite's ``base`` (default configs/default.yaml) -> the suite's ``common`` -> the entry's
    ``config`` -> ``dataset.options.scenario = <entry scenario>`` -> CLI flags,

and run through the usual ``run_benchmark`` path, so resume and run identity are unchanged; the
suite only adds which entries, where their shared store is (``results_dir``), and what the summary
reads of each entry (``evaluate``: the metric prefix, e.g. ``tabular_missing`` = image alone).

File keys: ``name``, ``base``, ``results_dir``, ``methods`` (``all`` = every registered method,
or a list), ``common`` (a config mapping), ``entries`` (name -> ``scenario``, ``evaluate``,
``config``).  An unknown key is an error naming the file and the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmark.config.loading import CONFIG_DIR, DEFAULT_CONFIG, deep_merge, load_config, read_yaml
from benchmark.config.schema import BenchmarkConfig
from benchmark.grid.spec import EVAL_SCENARIOS, metric_prefix
from core.errors import ConfigError
from methods import list_methods

SUITE_DIR = CONFIG_DIR / "suites"
SUITE_KEYS = ("name", "base", "results_dir", "methods", "common", "entries")
ENTRY_KEYS = ("scenario", "evaluate", "config")
# What the summary may read of an entry: the configured test mask ("test") or one whole-test-set scenario.
EVALUATIONS: tuple[str, ...] = tuple(metric_prefix(s) for s in EVAL_SCENARIOS)
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")  # entry names are folder names and tag values


@dataclass(frozen=True)
class SuiteEntry:
    """One entry: its name (folder and tag), the synthetic scenario, what the summary reads, and
    the config overrides (YAML structure) that make it, before CLI flags."""

    name: str
    scenario: str
    evaluate: str
    overrides: dict


@dataclass(frozen=True)
class Suite:
    """A suite file, validated: its entries in file order."""

    name: str
    path: Path
    base: Path
    results_dir: str
    entries: tuple[SuiteEntry, ...]

    def entry(self, name: str) -> SuiteEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise ConfigError(f"{self.path}: no entry '{name}'; entries: {', '.join(e.name for e in self.entries)}")


def suite_path(name_or_path: str | Path) -> Path:
    """``scenarios`` -> configs/suites/scenarios.yaml; a path to a YAML file is taken as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = SUITE_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))
        raise ConfigError(f"--suite: unknown suite '{name_or_path}'; known: {', '.join(known) or 'none'}")
    return candidate


def _methods(value: Any, where: str) -> list[str]:
    """``all`` (or nothing) -> every registered method, else the list as given (validated later)."""
    if value in (None, "all"):
        return list(list_methods())  # every registered method: the spec's "every registered method"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"{where}.methods: expected 'all' or a list of method names")
    return list(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A mapping section of the file (None = empty); anything else is an error naming the key."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return dict(value)


def load_suite(name_or_path: str | Path, only: Sequence[str] | None = None) -> Suite:
    """Read and validate a suite file; ``only`` keeps the named entries (in file order)."""
    path = suite_path(name_or_path)
    raw = read_yaml(path)
    where = str(path)
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; known: {', '.join(SUITE_KEYS)}")
    name = str(raw.get("name") or path.stem)
    base = Path(raw["base"]) if raw.get("base") else DEFAULT_CONFIG
    if not base.is_absolute() and not base.exists():
        base = CONFIG_DIR.parent / base
    results_dir = str(raw.get("results_dir") or f"results/{name}")
    common = _mapping(raw.get("common"), f"{where}.common")
    common["methods"] = _methods(raw.get("methods", common.get("methods")), where)
    entries_raw = _mapping(raw.get("entries"), f"{where}.entries")
    if not entries_raw:
        raise ConfigError(f"{where}.entries: at least one entry is needed")
    entries = []
    for entry_name, body in entries_raw.items():
        at = f"{where}.entries.{entry_name}"
        if not NAME.match(str(entry_name)):
            raise ConfigError(f"{at}: entry names are lower-case letters, digits and '_' (a folder name)")
        body = _mapping(body, at)
        bad = sorted(set(body) - set(ENTRY_KEYS))
        if bad:
            raise ConfigError(f"{at}: unknown key '{bad[0]}'; known: {', '.join(ENTRY_KEYS)}")
        scenario = body.get("scenario")
        if not isinstance(scenario, str) or not scenario:
            raise ConfigError(f"{at}.scenario: the synthetic scenario is required (e.g. balanced)")
        evaluate = str(body.get("evaluate", "test"))
        if evaluate not in EVALUATIONS:
            raise ConfigError(f"{at}.evaluate: {evaluate!r} is not one of {', '.join(EVALUATIONS)}")
        overrides = deep_merge(common, _mapping(body.get("config"), f"{at}.config"))
        overrides = deep_merge(overrides, {"dataset": {"options": {"scenario": scenario}},
                                           "results_dir": results_dir})
        entries.append(SuiteEntry(str(entry_name), scenario, evaluate, overrides))
    if only:
        names = {e.name for e in entries}
        missing = [n for n in only if n not in names]
        if missing:
            raise ConfigError(f"--suite-entries: no entry '{missing[0]}' in {where}; entries: {', '.join(sorted(names))}")
        entries = [e for e in entries if e.name in set(only)]
    return Suite(name, path, base, results_dir, tuple(entries))


def entry_overrides(entry: SuiteEntry, cli: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The entry's overrides with the CLI flags on top (a CLI ``--results-dir`` moves the whole suite)."""
    return deep_merge(entry.overrides, dict(cli or {}))


def entry_config(suite: Suite, entry: SuiteEntry, cli: Mapping[str, Any] | None = None) -> BenchmarkConfig:
    """The entry's validated benchmark config (``load_config``: the usual validation, one message)."""
    try:
        return load_config(suite.base, entry_overrides(entry, cli))
    except ConfigError as exc:
        raise ConfigError(f"suite {suite.name}, entry {entry.name}: {exc}") from None
