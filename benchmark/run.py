"""``python -m benchmark.run``: run the grid methods x missing specs x seeds on one dataset.

Every cell is a frozen RunSpec; cells already FINISHED in MLflow are skipped (resume), so an
interrupted grid continues where it stopped.  Data are split, masked and normalised once per
(missing spec, seed) and shared by every method of that cell group, so all methods see the
same masks (their SHA-256 is logged with every run).  At the end the leaderboard is rebuilt
from MLflow alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.errors import BenchmarkError, ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description="Benchmark fusion methods on one dataset under controlled missing modalities. "
                    "Finished cells are skipped, so rerunning the same command resumes an interrupted grid.")
    p.add_argument("--config", help="YAML config (default: configs/default.yaml)")
    p.add_argument("--dataset", help="dataset name (see --list); its preset configs/datasets/<name>.yaml is applied")
    p.add_argument("--data-root", help="folder holding the dataset's files (default: $MEDFUSION_DATA/<dataset>)")
    p.add_argument("--methods", help="comma-separated method names (see --list)")
    p.add_argument("--missing-rate", help="one or several comma-separated rates in [0, 1), e.g. 0.3 or 0,0.5")
    p.add_argument("--pattern", help="which modality can go missing: image | tabular | mixed")
    p.add_argument("--protocol", help="where masks apply: both | test_only | train_only")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--epochs", type=int, help="epoch budget shared by every method")
    p.add_argument("--batch-size", type=int, help="batch size shared by every method")
    p.add_argument("--lr", type=float, help="learning rate shared by every method")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results-dir>/mlflow.db; "
                                          "MLFLOW_TRACKING_URI also works)")
    p.add_argument("--results-dir", help="where leaderboards, masks and the MLflow store go (default: results)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard at the end")
    p.add_argument("--tuned", action="store_true",
                   help="use each method's tuned parameters from <results-dir>/<dataset>/tuned/<method>.yaml "
                        "(written by python -m benchmark.tune); runs are tagged tuned=true")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="local (default): cells run one after another in this process; ray: each cell is a Ray task")
    p.add_argument("--workers", type=int, help="--executor ray: number of parallel workers (CPUs) on a local Ray")
    p.add_argument("--ray-address", help="--executor ray: join an existing cluster (an address, or 'auto' "
                                         "for one started with `ray start`)")
    p.add_argument("--list", action="store_true", help="list registered methods and datasets and exit")
    return p


def _csv(value: str, cast, option: str) -> list:
    try:
        items = [cast(v.strip()) for v in value.split(",") if v.strip()]
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
        o["methods"] = _csv(args.methods, str, "--methods")
    missing: dict[str, Any] = {}
    if args.missing_rate is not None:
        rates = _csv(args.missing_rate, float, "--missing-rate")
        for r in rates:
            if not 0.0 <= r < 1.0:
                raise ConfigError(f"--missing-rate: {r} is outside [0, 1)")
        missing["rates"] = rates
    if args.pattern:
        missing["pattern"] = args.pattern
    if args.protocol:
        missing["protocol"] = args.protocol
    if missing:
        o["missing"] = missing
    if args.seeds:
        o["seeds"] = _csv(args.seeds, int, "--seeds")
    training = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                  ("lr", args.lr), ("device", args.device)) if v is not None}
    if training:
        o["training"] = training
    execution = {k: v for k, v in (("executor", args.executor), ("workers", args.workers),
                                    ("ray_address", args.ray_address)) if v is not None}
    if execution:
        o["execution"] = execution
    if args.results_dir:
        o["results_dir"] = args.results_dir
    if args.tracking_uri:
        o["tracking_uri"] = args.tracking_uri
    return o


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            from datasets import list_datasets
            from methods import list_methods
            print("methods: " + ", ".join(list_methods()))
            print("datasets: " + ", ".join(list_datasets()))
            return 0
        from benchmark.config import load_config
        cfg = load_config(args.config, overrides_from_args(args))
        return run_benchmark(cfg, build_leaderboard=not args.no_leaderboard, tuned=args.tuned)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return 130


def run_benchmark(cfg, build_leaderboard: bool = True, tuned: bool = False) -> int:
    """Run every unfinished cell of ``cfg``; returns the process exit status.

    ``tuned``: each method runs with its tuned parameters (benchmark.tune.apply_tuned), under a
    config hash of its own, so tuned and default runs are distinct cells of the same store."""
    import torch
    from rich.console import Console

    from benchmark.runspec import build_grid
    from benchmark.tracking import resolve_tracking_uri
    from benchmark.training import resolve_device
    from datasets import create_dataset

    console = Console(stderr=True)
    results_dir = Path(cfg.results_dir)
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    resolve_device(cfg.training.device)  # fail early on --device cuda without CUDA
    dataset = create_dataset(cfg.dataset.name, cfg.dataset.root, **cfg.dataset.options)
    grid = build_grid(cfg, with_oracle=dataset.oracle() is not None)
    cell_cfgs: dict = {}
    cell_tags: dict = {}
    if tuned:
        from benchmark.tune import apply_tuned
        grid, cell_cfgs, cell_tags = apply_tuned(cfg, grid, results_dir)

    uri = resolve_tracking_uri(None, cfg.tracking_uri, results_dir)
    execution = cfg.execution
    server = None
    if execution.executor == "ray" and execution.workers > 1 and uri.startswith("sqlite:"):
        # Many processes never write one SQLite file: they go through a local tracking server.
        from benchmark.server import LocalMlflowServer
        server = LocalMlflowServer(results_dir, backend_uri=uri).start()
        console.print(f"started MLflow tracking server {server.uri} (backend {uri})")
        uri = server.uri
    try:
        return _run_grid(cfg, grid, cell_cfgs, cell_tags, uri, results_dir, console, build_leaderboard)
    finally:
        if server is not None:
            server.stop()


def _run_grid(cfg, grid, cell_cfgs, cell_tags, uri: str, results_dir: Path, console,
              build_leaderboard: bool) -> int:
    import mlflow
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from benchmark.config import dump_config
    from benchmark.executor import CellRunner, LocalExecutor, RayExecutor
    from benchmark.tracking import Tracker

    tracker = Tracker(uri, results_dir)
    exp_id = tracker.experiment_id(cfg.dataset.name)
    by_key = tracker.runs_by_key(exp_id)
    finished = {k for k, runs in by_key.items() if any(r.info.status == "FINISHED" for r in runs)}
    for key, runs in by_key.items():  # attempts killed with the process: close them
        for run in runs:
            if run.info.status == "RUNNING" and key not in finished:
                tracker.client.set_terminated(run.info.run_id, "KILLED")
    todo = [s for s in grid if s.key() not in finished]
    console.print(f"[bold]{cfg.dataset.name}[/]: {len(grid)} cells, {len(grid) - len(todo)} already finished, "
                  f"{len(todo)} to run  (MLflow: {tracker.uri})")
    failures: list[str] = []
    started = time.time()
    if todo:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}",
                              tags={"kind": "invocation"}) as parent, \
                Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), console=console, transient=False) as progress:
            mlflow.log_text(dump_config(cfg), "config.yaml")
            grid_task = progress.add_task(f"grid ({cfg.execution.executor})", total=len(todo))
            runner = CellRunner(cfg, tracker.uri, exp_id, parent.info.run_id, cell_cfgs, cell_tags,
                                threads=cfg.training.threads)
            if cfg.execution.executor == "ray":
                executor = RayExecutor(cfg.execution.workers, cfg.execution.ray_address, cfg.execution.retries,
                                       cfg.execution.gpus_per_task, cfg.execution.threads_per_worker)
            else:
                executor = LocalExecutor(progress)

            def on_done(spec, error: str | None) -> None:
                progress.update(grid_task, description=f"{spec.method:<16} rate={spec.rate:g} seed={spec.seed}")
                progress.advance(grid_task)
                if error is not None:
                    failures.append(f"{spec.label()}: {error}")
                    console.print(f"[red]failed[/] {spec.label()}: {error}")

            executor.execute(todo, runner, on_done)
    console.print(f"grid done in {time.time() - started:.0f} s")
    if build_leaderboard:
        from benchmark.leaderboard import build_leaderboards, render_console
        written = build_leaderboards(tracker.uri, results_dir, [cfg.dataset.name])
        render_console(tracker.uri, cfg.dataset.name, console)
        for path in written:
            console.print(f"leaderboard: {path}")
    console.print(f"MLflow store: {tracker.uri}  (open with: make ui)")
    if failures:
        console.print(f"[red]{len(failures)} cell(s) failed[/]:")
        for f in failures:
            console.print(f"  {f}", markup=False)
        return 1
    return 0


SCENARIOS = ("mask", "full", "image_missing", "tabular_missing")


def machine_description(device: str) -> str:
    """Where a run ran (for the leaderboard's provenance line): CPU model and cores, or the GPU."""
    import platform

    import torch

    from benchmark.training import resolve_device
    if resolve_device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(0)} (CUDA), {os.cpu_count()} CPU cores"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__} CPU"


def scenario_presence(split, scenario: str) -> np.ndarray:
    """Which modalities each test sample has in a scenario: the configured mask, everything
    really available ("full", the mask undone), or that with one modality removed for all."""
    if scenario == "mask":
        return split.present
    out = split.real_present.copy()
    if scenario != "full":
        out[:, 0 if scenario == "image_missing" else 1] = False
    return out


def _oracle_reference(oracle, data, mspec, seed: int) -> dict[str, float]:
    """Bayes AUC of the actual test set (per scenario) with its DeLong SE, and the population value."""
    from benchmark.metrics import compute_metrics, delong

    test = data.splits["test"]
    out: dict[str, float] = {}
    for scenario in SCENARIOS:
        present = scenario_presence(test, scenario)
        probs = oracle.scores(test.table, test.rows, present)
        metrics = compute_metrics(data.info.task, test.labels, probs)
        prefix = "test" if scenario == "mask" else scenario
        for k, v in metrics.items():
            out[f"{prefix}_{k}"] = v
        if data.info.task == "binary":
            _, cov = delong(test.labels, probs[:, 1])
            out[f"{prefix}_auc_se"] = float(np.sqrt(cov[0, 0]))
    out["population_auc"] = oracle.population_auc(mspec.pattern, mspec.rate_for("test"), image_share=mspec.image_share)
    return out


def _run_cell(cfg, spec, data, reference: dict[str, float], parent_id: str, exp_id: str,
              progress, oracle, extra_tags: dict[str, str] | None = None) -> None:
    """Train and evaluate one cell (or log the oracle reference) as a child MLflow run."""
    import mlflow
    import torch

    from benchmark.metrics import compute_metrics
    from benchmark.tracking import KEY_TAG
    from benchmark.training import predict, resolve_device, seed_everything, train_method
    from methods import create_method, get_method_class

    display = "Bayes oracle" if oracle is not None else (get_method_class(spec.method).display_name or spec.method)
    tags = {KEY_TAG: spec.key(), "method": spec.method, "method_display": display,
            "dataset": spec.dataset, "row_kind": "reference" if oracle is not None else "method",
            "mlflow.parentRunId": parent_id, "machine": machine_description(cfg.training.device),
            **(extra_tags or {"tuned": "false"})}
    with mlflow.start_run(experiment_id=exp_id, run_name=spec.label(), nested=True, tags=tags):
        params = {**asdict(spec), "image_share": cfg.missing.image_share,
                  "encoder_image": cfg.encoders.image.model, "encoder_tabular_dim": cfg.encoders.tabular.dim}
        params.update({f"option.{k}": v for k, v in cfg.options_for(spec.method).items()})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({f"mask_sha256_{s}": h for s, h in data.mask_hashes.items()})
        mlflow.log_metrics({f"count_{k}": float(v) for k, v in data.counts.items()})
        for split, path in data.mask_files.items():
            mlflow.log_artifact(str(path), artifact_path="masks")
        if oracle is not None:
            mlflow.log_metrics({k: float(v) for k, v in reference.items()})
            return
        seed_everything(spec.seed)
        method = create_method(spec.method, data.info, cfg.encoders, **cfg.options_for(spec.method))
        epoch_task = progress.add_task(f"  epochs {spec.method}", total=spec.epochs) if progress else None
        fail_once = os.environ.get("MEDFUSION_FAIL_ONCE") == spec.key()  # failure injection (tests)

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            mlflow.log_metrics({k: float(v) for k, v in record.items() if np.isfinite(v)}, step=epoch)
            if progress is not None:
                progress.advance(epoch_task)
            if fail_once:
                marker = Path(os.environ.get("MEDFUSION_FAIL_DIR", tempfile.gettempdir())) / f"failed-{spec.key()}"
                if not marker.exists():
                    marker.touch()
                    os._exit(1)  # die mid-run, as a crashed worker would

        t0 = time.time()
        result = train_method(method, data, cfg.training, spec.seed, on_epoch)
        train_seconds = time.time() - t0
        if progress is not None:
            progress.remove_task(epoch_task)
        device = resolve_device(cfg.training.device)
        test = data.splits["test"]
        metrics: dict[str, float] = {"train_seconds": train_seconds, "best_epoch": float(result.best_epoch),
                                     "best_val": result.best_val}
        metrics.update({f"best_epoch_{name}": float(e) for name, e in result.group_best_epochs.items()})
        predictions: dict[str, np.ndarray] = {"ids": test.ids.astype(str), "labels": test.labels}
        t1 = time.time()
        for scenario in SCENARIOS:
            probs = predict(method, test, data.train_prior, device, cfg.training.eval_batch_size,
                            scenario_presence(test, scenario))
            predictions[f"probs_{scenario}"] = probs.astype(np.float32)
            prefix = "test" if scenario == "mask" else scenario
            for k, v in compute_metrics(data.info.task, test.labels, probs).items():
                metrics[f"{prefix}_{k}"] = v
        metrics["eval_seconds"] = time.time() - t1
        predictions["present_mask"] = test.present
        for k, v in reference.items():  # the Bayes reference on this very test set, for leak checks
            metrics[f"bayes_{k}"] = v
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            np.savez_compressed(Path(tmp) / "predictions.npz", **predictions)
            mlflow.log_artifact(str(Path(tmp) / "predictions.npz"))
            torch.save(method.state_dict(), Path(tmp) / "model_state_dict.pt")
            mlflow.log_artifact(str(Path(tmp) / "model_state_dict.pt"))
        mlflow.log_text(json.dumps(result.history, indent=1), "history.json")


if __name__ == "__main__":
    sys.exit(main())
