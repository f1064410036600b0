"""The local executor with ``--workers 2``: two spawned worker processes sharing this machine's device.

Tiny grids only (1 epoch): the same results as the serial path, resume, a failing cell and a dead
worker reported while the others finish, and SIGTERM mid-grid leaving no RUNNING record and no
process behind.
"""
from __future__ import annotations

import signal

from mlflow.tracking import MlflowClient

from benchmark.config import load_config
from benchmark.execution.local_pool import Dispatch, group_of
from benchmark.grid import build_grid
from benchmark.run import main
from benchmark.tracking.store import KILLED_REASON
from tests.conftest import write_tiny_config
from tests.test_faults import (all_runs, assert_complete, cell, cell_of, children, descendants_gone, latest_attempts,
                               log_of, parents, wait_for, write_config)
from tests.test_faults import spawn  # noqa: F401 - the fixture: drivers in their own session, cleaned up

WORKERS = ["--executor", "local", "--workers", "2", "--no-leaderboard"]


def finished_metrics(results) -> dict[str, tuple[dict, dict]]:
    """runspec key -> (metrics without timings, mask hashes) of its FINISHED run."""
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medfusion-synthetic").experiment_id
    out = {}
    for run in client.search_runs([exp], max_results=1000, filter_string="attributes.status = 'FINISHED'"):
        if "runspec_key" in run.data.tags:
            metrics = {k: v for k, v in run.data.metrics.items() if not k.endswith("_seconds")}
            hashes = {k: v for k, v in run.data.tags.items() if k.startswith("mask_sha256")}
            out[run.data.tags["runspec_key"]] = (metrics, hashes)
    return out


def test_dispatch_keeps_a_group_on_one_worker_then_shares_the_rest(tmp_path):
    cfg_path, _ = write_tiny_config(tmp_path)
    grid = build_grid(load_config(cfg_path), with_oracle=True)  # 4 groups of 3 cells
    dispatch, current, taken = Dispatch(grid), {0: None, 1: None}, {0: [], 1: []}
    while dispatch:
        for worker in (0, 1):
            spec = dispatch.next_for(worker, current[worker])
            if spec is not None:
                current[worker] = group_of(spec)
                taken[worker].append(spec)
    assert sorted(s.key() for s in taken[0] + taken[1]) == sorted(s.key() for s in grid)
    for worker in (0, 1):  # each worker ran whole groups: 2 preparations each, as serial would have 4 in all
        assert len({group_of(s) for s in taken[worker]}) == 2


def test_two_workers_give_the_serial_results_and_resume(tmp_path, capsys):
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    serial_cfg, serial = write_tiny_config(tmp_path / "serial")
    parallel_cfg, parallel = write_tiny_config(tmp_path / "parallel")
    assert main(["--config", str(serial_cfg), "--no-leaderboard"]) == 0
    assert main(["--config", str(parallel_cfg), *WORKERS]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "MLflow tracking server" in err  # SQLite and two workers: through a local server
    assert_complete(parallel, 12)
    expected, got = finished_metrics(serial), finished_metrics(parallel)
    assert set(got) == set(expected) and len(got) == 12
    for key, (metrics, hashes) in expected.items():
        assert got[key][1] == hashes, key  # the same masks
        assert got[key][0] == metrics, key  # bitwise: one torch thread in both, the same seeds
    # Resume: nothing left to run, nothing run twice.
    assert main(["--config", str(parallel_cfg), *WORKERS]) == 0
    assert "12 already finished, 0 to run" in " ".join(capsys.readouterr().err.split())
    assert len(children(parallel)) == 12


def test_a_failing_cell_and_a_dead_worker_are_reported_and_the_others_finish(tmp_path, monkeypatch, capsys):
    cfg, results = write_config(tmp_path, methods=("tabular_sklearn", "late_fusion"), rates=(0.5,), seeds=(0, 1))
    nan, dies = cell("late_fusion", 0.5, 0), cell("late_fusion", 0.5, 1)
    monkeypatch.setenv("MEDFUSION_FAULT", f"nan:{nan}")
    monkeypatch.setenv("MEDFUSION_FAIL_ONCE", dies)  # its worker process exits mid-cell (once)
    monkeypatch.setenv("MEDFUSION_FAIL_DIR", str(tmp_path))
    assert main(["--config", str(cfg), *WORKERS]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "2 cell(s) failed" in err and "non-finite loss in epoch 0" in err and "worker process died" in err
    assert (tmp_path / f"failed-{dies}").exists()
    assert_complete(results, 6, failed=(nan, dies))
    attempts = latest_attempts(results)
    assert [r.info.status for r in attempts[nan]] == ["FAILED"]
    [dead] = attempts[dies]
    assert dead.info.status == "KILLED" and "worker process died" in dead.data.tags[KILLED_REASON]
    assert [p.info.status for p in parents(results)] == ["FINISHED"]
    # Resume: only the two failed cells run again.
    monkeypatch.delenv("MEDFUSION_FAULT")
    assert main(["--config", str(cfg), *WORKERS]) == 0
    assert "4 already finished, 2 to run" in " ".join(capsys.readouterr().err.split())
    assert_complete(results, 6)
    attempts = latest_attempts(results)
    assert all(len(runs) == 1 for name, runs in attempts.items() if name not in (nan, dies))


def test_sigterm_mid_grid_leaves_no_running_record_and_no_process(tmp_path, spawn):  # noqa: F811
    cfg, results = write_config(tmp_path, methods=("late_fusion",), rates=(0.5,), seeds=(0, 1))
    first, second = cell("late_fusion", 0.5, 0), cell("late_fusion", 0.5, 1)
    proc = spawn(["--config", str(cfg), *WORKERS], MEDFUSION_FAULT=f"hang:{first},hang:{second}")
    wait_for(lambda: all((tmp_path / f"hang-{k}").exists() for k in (first, second)), 240,
             "both workers to hang", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log_of(proc)[-3000:]
    left = descendants_gone(spawn)  # both workers, the MLflow server and its uvicorn, the watchdog
    assert not left, left
    assert not [r.info.run_name for r in all_runs(results) if r.info.status == "RUNNING"]
    killed = [r for r in children(results) if r.info.status == "KILLED"]
    assert sorted(cell_of(r) for r in killed) == sorted((first, second))
    assert all("SIGTERM" in r.data.tags[KILLED_REASON] for r in killed)
    assert [p.info.status for p in parents(results)] == ["KILLED"]
    assert not (results / "mlflow.db-server.json").exists()
