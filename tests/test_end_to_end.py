"""A tiny grid end to end: MLflow store, resume after interruption, leaderboard, oracle bound."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

import benchmark.cells.runner as cell_runner
import benchmark.run as run_module
from benchmark.grid import ORACLE_METHOD
from benchmark.summary import build_leaderboards, load_runs
from tests.conftest import write_tiny_config

REPO = Path(__file__).resolve().parent.parent


def _children(results: Path) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("medfusion-synthetic")
    return mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")


def test_tiny_grid_logs_runs_and_writes_leaderboard(tmp_path):
    cfg, results = write_tiny_config(tmp_path)
    assert run_module.main(["--config", str(cfg)]) == 0
    runs = _children(results)
    # 2 rates x 2 seeds x (2 methods + oracle reference)
    assert len(runs) == 12 and (runs.status == "FINISHED").all()
    methods = runs[runs["tags.method"] != ORACLE_METHOD]
    for col in ("metrics.test_auc", "metrics.full_auc", "metrics.image_missing_auc",
                "metrics.tabular_missing_auc", "metrics.test_acc", "metrics.train_seconds"):
        assert methods[col].notna().all(), col
    # Every method in a (rate, seed) cell used the very same masks.
    for _, cell in runs.groupby(["params.rate", "params.seed"]):
        assert cell["tags.mask_sha256_test"].nunique() == 1
        assert cell["tags.mask_sha256_train"].nunique() == 1
    # Per-epoch metrics and artifacts are there.
    client = mlflow.tracking.MlflowClient()
    run_id = methods[methods["tags.method"] == "late_fusion"].run_id.iloc[0]
    assert client.get_metric_history(run_id, "val_auc")
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"predictions.npz", "model_state_dict.pt", "masks", "history.json"} <= names
    assert (results / "masks").glob("synthetic_test_mixed_0.5_seed0.csv")
    md = (results / "synthetic" / "leaderboard.md").read_text()
    assert "Late fusion" in md and "Bayes oracle" in md and "(n=2)" in md
    csv = pd.read_csv(results / "synthetic" / "leaderboard.csv")
    # the methods, the Bayes oracle and its independent-evidence ceiling (sum of marginal LLRs)
    assert set(csv.method) == {"tabular_sklearn", "late_fusion", ORACLE_METHOD, "evidence_ceiling"}
    # Rebuilding from the same store gives byte-identical files.
    before = (results / "synthetic" / "leaderboard.md").read_bytes(), (results / "synthetic" / "leaderboard.csv").read_bytes()
    build_leaderboards(f"sqlite:///{results / 'mlflow.db'}", results, ["synthetic"])
    after = (results / "synthetic" / "leaderboard.md").read_bytes(), (results / "synthetic" / "leaderboard.csv").read_bytes()
    assert before == after
    # No method beats the Bayes oracle on its own test set by more than 3 DeLong SE.
    for _, row in methods.iterrows():
        bound = row["metrics.bayes_test_auc"] + 3 * row["metrics.bayes_test_auc_se"]
        assert row["metrics.test_auc"] <= bound, row["tags.method"]


def test_interrupted_grid_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    cfg, results = write_tiny_config(tmp_path)
    real_cell = cell_runner.run_cell
    calls: list[str] = []

    def interrupting(spec, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(spec.key())
        return real_cell(spec, *args, **kwargs)

    monkeypatch.setattr(cell_runner, "run_cell", interrupting)
    assert run_module.main(["--config", str(cfg)]) == 130
    assert len(calls) == 3
    first_keys = list(calls)

    resumed: list[str] = []

    def counting(spec, *args, **kwargs):
        resumed.append(spec.key())
        return real_cell(spec, *args, **kwargs)

    monkeypatch.setattr(cell_runner, "run_cell", counting)
    assert run_module.main(["--config", str(cfg)]) == 0
    assert len(resumed) == 12 - 3 and not set(resumed) & set(first_keys)
    runs = _children(results)
    finished = runs[runs.status == "FINISHED"]
    assert finished["tags.runspec_key"].is_unique and len(finished) == 12


def _finished_children(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                               "where t.key = 'runspec_key' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_process_resumes_with_no_corrupt_record(tmp_path):
    """SIGKILL mid-grid (no clean-up code runs), then rerun: every cell finished exactly once."""
    cfg, results = write_tiny_config(tmp_path, epochs=3)
    # mlflow.set_tracking_uri() in earlier in-process tests exports MLFLOW_TRACKING_URI: drop it so
    # the subprocess uses the config's own store.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.run", "--config", str(cfg), "--no-leaderboard"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = results / "mlflow.db"
    deadline = time.time() + 240
    while time.time() < deadline and _finished_children(db) < 2 and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, f"the grid ended (status {proc.returncode}) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _finished_children(db)
    assert 2 <= killed_at < 12
    out = subprocess.run([sys.executable, "-m", "benchmark.run", "--config", str(cfg)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{killed_at} already finished" in out.stderr.replace("\n", " ")
    runs = _children(results)
    finished = runs[runs.status == "FINISHED"]
    assert len(finished) == 12 and finished["tags.runspec_key"].is_unique
    assert not (runs.status == "RUNNING").any()  # the attempt killed with the process was closed
    assert np.isfinite(finished.loc[finished["tags.method"] != ORACLE_METHOD, "metrics.test_auc"]).all()
    assert len(load_runs(f"sqlite:///{db}", "synthetic")) == 12
