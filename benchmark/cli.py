"""Command-line pieces shared by ``benchmark.run`` and ``benchmark.tune``: flags and their overrides.

The CLI layer only parses and builds the config; validation happens once in
``benchmark.config.load_config``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from core.calibration import CALIBRATIONS
from core.errors import BenchmarkError, ConfigError
from datasets import list_datasets
from methods import list_methods


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description="Benchmark fusion methods on one dataset under controlled missing modalities. "
                    "Finished cells are skipped, so rerunning the same command resumes an interrupted grid.")
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--dataset", help="dataset name (see --list); its preset configs/datasets/<name>.yaml is applied")
    p.add_argument("--data-root", help="folder holding the dataset's files (default: $MEDFUSION_DATA/<dataset>)")
    p.add_argument("--methods", nargs="+", help="method names, comma- or space-separated (see --list); all = every registered method")
    p.add_argument("--missing-rate", nargs="+", help="one or several rates in [0, 1), e.g. 0.3, 0,0.5 or 0 0.5")
    p.add_argument("--pattern", help="which modality can go missing: image | tabular | mixed")
    p.add_argument("--protocol", help="where masks apply: both | test_only | train_only")
    p.add_argument("--mechanism", help="missingness mechanism of the train/val masks: mcar (default) | mar | mnar")
    p.add_argument("--strength", help="strength s >= 0 of mar / mnar (default 1.0)")
    p.add_argument("--mar-column", help="mar: the numeric tabular column whose high values lose a modality first")
    p.add_argument("--test-mechanism", help="mechanism of the test masks if it differs (mechanism shift), "
                                            "e.g. --mechanism mnar --test-mechanism mcar")
    p.add_argument("--seeds", nargs="+", help="seeds, e.g. 0,1,2 or 0 1 2")
    p.add_argument("--max-epochs", "--epochs", dest="max_epochs", type=int,
                   help="epoch cap shared by every method (training.max_epochs)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without validation improvement (0 = off)")
    p.add_argument("--min-epochs", type=int, help="early stopping never stops before this many epochs")
    p.add_argument("--batch-size", type=int, help="batch size shared by every method")
    p.add_argument("--lr", type=float, help="learning rate shared by every method")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--calibration", choices=CALIBRATIONS,
                   help="post-hoc calibration shared by every method, fitted on validation (default: affine)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results-dir>/mlflow.db; "
                                          "MLFLOW_TRACKING_URI also works)")
    p.add_argument("--results-dir", help="where leaderboards, masks and the MLflow store go (default: results)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard at the end")
    p.add_argument("--tuned", action="store_true",
                   help="use each method's tuned parameters from <results-dir>/<dataset>/tuned/<method>.yaml "
                        "(written by python -m benchmark.tune); runs are tagged tuned=true")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="local (default): cells run in this process one after another, or in --workers "
                        "worker processes on this machine; ray: each cell is a Ray task")
    p.add_argument("--workers", type=int,
                   help="cells run at once (default 1). --executor local: N worker processes sharing the "
                        "configured device (on CUDA, pick N by GPU memory); --executor ray: N workers (CPUs) "
                        "on a local Ray")
    p.add_argument("--ray-address", help="--executor ray: join an existing cluster (an address, or 'auto' "
                                         "for one started with `ray start`)")
    p.add_argument("--suite", help="run a suite of configs, e.g. scenarios (configs/suites/<name>.yaml, or a path): "
                                   "each entry is a benchmark config; other flags apply to every entry")
    p.add_argument("--suite-entries", nargs="+", help="--suite: run only these entries (comma- or space-separated)")
    p.add_argument("--list", action="store_true", help="list registered methods and datasets and exit")
    return p


def parse_list(value: str | Sequence[str], cast: Callable[[str], Any], option: str) -> list:
    """``0,0.5`` or ``0 0.5`` (as people type them) -> a list; one clear error on a bad item."""
    text = value if isinstance(value, str) else ",".join(value)
    try:
        items = [cast(v.strip()) for v in text.replace(" ", ",").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option}: cannot parse {value!r}") from None
    if not items:
        raise ConfigError(f"{option}: empty value")
    return items


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if args.dataset:
        o["dataset"] = {"name": args.dataset}
    if args.data_root:
        o.setdefault("dataset", {})["root"] = args.data_root
    if args.methods:
        names = parse_list(args.methods, str, "--methods")
        o["methods"] = list_methods() if names == ["all"] else names  # all: every registered method
    missing: dict[str, Any] = {}
    if args.missing_rate is not None:
        rates = parse_list(args.missing_rate, float, "--missing-rate")
        for r in rates:
            if not 0.0 <= r < 1.0:
                raise ConfigError(f"--missing-rate: {r} is outside [0, 1)")
        missing["rates"] = rates
    if args.pattern:
        missing["pattern"] = args.pattern
    if args.protocol:
        missing["protocol"] = args.protocol
    missing.update(mechanism_overrides(args))
    if missing:
        o["missing"] = missing
    if args.seeds:
        o["seeds"] = parse_list(args.seeds, int, "--seeds")
    training = {k: v for k, v in (("max_epochs", args.max_epochs), ("patience", args.patience),
                                  ("min_epochs", args.min_epochs), ("batch_size", args.batch_size),
                                  ("lr", args.lr), ("device", args.device)) if v is not None}
    if training:
        o["training"] = training
    if args.calibration:
        o["evaluation"] = {"calibration": args.calibration}
    execution = {k: v for k, v in (("executor", args.executor), ("workers", args.workers),
                                    ("ray_address", args.ray_address)) if v is not None}
    if execution:
        o["execution"] = execution
    if args.results_dir:
        o["results_dir"] = args.results_dir
    if args.tracking_uri:
        o["tracking_uri"] = args.tracking_uri
    return o


def mechanism_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--mechanism/--strength/--mar-column/--test-mechanism`` -> ``missing.*`` keys (the values
    are checked by ``MissingSpec``; only the number is parsed here, with the option's name)."""
    out: dict[str, Any] = {}
    for flag, key in (("mechanism", "mechanism"), ("test_mechanism", "test_mechanism"), ("mar_column", "mar_column")):
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    strength = getattr(args, "strength", None)
    if strength is not None:
        try:
            out["strength"] = float(strength)
        except ValueError:
            raise ConfigError(f"--strength: cannot parse {strength!r} (a number >= 0)") from None
    return out


def print_registries() -> int:
    """``--list``: the registered methods and datasets."""
    print("methods: " + ", ".join(list_methods()))
    print("datasets: " + ", ".join(list_datasets()))
    return 0


def guarded(body: Callable[[], int], interrupted: str) -> int:
    """A CLI's exit status: a user error prints its one-line message and gives 2 (no traceback),
    Ctrl-C prints what was kept and gives 130."""
    try:
        return body()
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
