"""The Ray executor: 2 local workers, a local MLflow server, a worker killed mid-run.

Every cell must end FINISHED exactly once in MLflow, with no duplicate or dangling record.
"""
from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

ray = pytest.importorskip("ray", reason="the Ray extra (pip install -e '.[ray]') is part of the test set-up")

from benchmark.cells.faults import cell_name  # noqa: E402
from benchmark.config import load_config  # noqa: E402
from benchmark.grid import build_grid  # noqa: E402
from benchmark.run import main  # noqa: E402
from tests.conftest import write_tiny_config  # noqa: E402


def test_ray_grid_with_a_killed_worker_finishes_every_cell_once(tmp_path, monkeypatch):
    cfg_path, results = write_tiny_config(tmp_path, epochs=2)
    cfg = load_config(cfg_path)
    victim = next(s for s in build_grid(cfg, with_oracle=True) if s.method == "late_fusion" and s.missing.rate == 0.5)
    # Targeted by cell name, not by key: the key holds a code fingerprint, which an edit of the
    # working tree between this process and the driver's would change.
    monkeypatch.setenv("MEDFUSION_FAIL_ONCE", cell_name(victim))
    monkeypatch.setenv("MEDFUSION_FAIL_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    code = main(["--config", str(cfg_path), "--executor", "ray", "--workers", "2", "--no-leaderboard"])
    assert code == 0
    assert (tmp_path / f"failed-{cell_name(victim)}").exists(), "the failure was not injected"
    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")  # read the store directly
    exp = mlflow.get_experiment_by_name("medfusion-synthetic")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")
    finished = runs[runs.status == "FINISHED"]
    assert len(finished) == 12 and finished["tags.runspec_key"].is_unique
    attempts = runs[runs["tags.runspec_key"] == victim.key()]
    assert sorted(attempts.status) == ["FINISHED", "KILLED"]  # the dead attempt was closed, not duplicated
    assert not (runs.status == "RUNNING").any()
    # Rerunning with the local executor finds everything finished (resume is executor-independent).
    os.environ.pop("MEDFUSION_FAIL_ONCE", None)
    assert main(["--config", str(cfg_path), "--no-leaderboard"]) == 0
    again = mlflow.search_runs([exp.experiment_id], filter_string="tags.runspec_key != ''")
    assert len(again) == len(runs)
