"""Crash safety (#21): every way a grid can die leaves no orphan, no stale RUNNING run, no lost result.

One test per way of dying, on tiny grids (1-2 epochs).  Faults are injected with the
``MEDFUSION_FAULT`` hooks of ``benchmark.cells.faults`` (they reach Ray workers too) or real
conditions (a results path that is a file, a process killed with SIGKILL).  Subprocesses carry a
marker variable in their environment, so every process they started is found (and cleaned up)
whatever happens to the test; only 127.0.0.1 is used.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import benchmark.cells.runner as cell_runner
import benchmark.execution.publish as publish_module
import benchmark.leaderboard as leaderboard_module
import benchmark.run as run_module
import benchmark.tracking.store as store_module
from benchmark.tracking.processes import host_name, processes_in_session, processes_with_env, start_token, terminate
from benchmark.tracking.server import STORE_ENV, LocalMlflowServer
from benchmark.tracking.store import KILLED_REASON, Tracker, TrackingUnavailable
from core.errors import BenchmarkError

REPO = Path(__file__).resolve().parent.parent
MARK = "MEDFUSION_TEST_PROCESS"

CONFIG = """
dataset:
  name: synthetic
  options: {{n_train: 96, n_val: 48, n_test: 96, sigma_pix: 0.1, mc_samples: 20000}}
methods: {methods}
missing: {{pattern: mixed, protocol: both, rates: {rates}}}
seeds: {seeds}
encoders:
  image: {{model: test_efficientnet}}
  tabular: {{hidden: [16], dim: 16}}
training: {{max_epochs: {epochs}, batch_size: 32}}
"""


def write_config(tmp_path: Path, methods=("tabular_sklearn", "late_fusion"), rates=(0.0, 0.5), seeds=(0, 1),
                 epochs: int = 1, results: Path | str | None = None) -> tuple[Path, Path]:
    """A tiny grid; results_dir: <tmp>/results, or ``results``, or none with ``results=""``."""
    results = tmp_path / "results" if results is None else results
    text = CONFIG.format(methods=list(methods), rates=list(rates), seeds=list(seeds), epochs=epochs)
    if results != "":
        text += f"results_dir: {results}\n"
    path = tmp_path / f"grid-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return path, results


def store(results: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    return client, client.get_experiment_by_name("medfusion-synthetic").experiment_id


def all_runs(results: Path) -> list:
    client, exp = store(results)
    return list(client.search_runs([exp], max_results=10000))


def children(results: Path) -> list:
    return [r for r in all_runs(results) if "runspec_key" in r.data.tags]


def parents(results: Path) -> list:
    return [r for r in all_runs(results) if r.data.tags.get("kind") == "invocation"]


def latest_attempts(results: Path) -> dict[str, list]:
    """Cell name -> the attempts of its latest key.  (A key includes the code fingerprint, so a file
    edited between two runs gives the cell a new key: the resume rule then holds per key.)"""
    by_cell: dict[str, list] = {}
    for run in children(results):
        by_cell.setdefault(cell_of(run), []).append(run)
    out = {}
    for name, runs in by_cell.items():
        key = max(runs, key=lambda r: r.info.start_time).data.tags["runspec_key"]
        out[name] = [r for r in runs if r.data.tags["runspec_key"] == key]
    return out


def assert_complete(results: Path, cells: int, failed: tuple[str, ...] = ()) -> None:
    """Every cell FINISHED exactly once (``failed`` cells: never), no key FINISHED twice, nothing
    RUNNING (children and parents)."""
    latest = latest_attempts(results)
    assert len(latest) == cells, sorted(latest)
    for name, runs in latest.items():
        statuses = sorted(r.info.status for r in runs)
        assert statuses.count("FINISHED") == (0 if name in failed else 1), (name, statuses)
    finished = [r.data.tags["runspec_key"] for r in children(results) if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished))
    running = [r.info.run_name for r in all_runs(results) if r.info.status == "RUNNING"]
    assert not running, running


def cell(method: str, rate: float, seed: int) -> str:
    """A fault target that does not depend on the code (``benchmark.cells.faults.cell_name``)."""
    return f"{method}-{rate:g}-seed{seed}"


def cell_of(run) -> str:
    return cell(run.data.tags["method"], float(run.data.params["rate"]), int(run.data.params["seed"]))


def finished_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                               "where t.key = 'runspec_key' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before {what}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def spawn(tmp_path):
    """Start ``python -m benchmark.run`` subprocesses; every process they start is stopped afterwards."""
    marker = uuid.uuid4().hex
    procs: list[subprocess.Popen] = []

    def start(args: list[str], **env: str) -> subprocess.Popen:
        full = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MEDFUSION_FAULT")}
        full.update(PYTHONPATH=str(REPO), MEDFUSION_FAIL_DIR=str(tmp_path), **{MARK: marker}, **env)
        log = open(tmp_path / f"driver-{len(procs)}.log", "w")
        # Its own session: what it starts without a session of its own is found by the session id.
        proc = subprocess.Popen([sys.executable, "-m", "benchmark.run", *args], cwd=REPO, env=full,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name
        procs.append(proc)
        return proc

    def left() -> dict[int, str]:
        """Processes started by the drivers: by the marker in their environment or their session."""
        found = processes_with_env(MARK, marker)
        for proc in procs:
            found.update(processes_in_session(proc.pid))
        return found

    start.marker = marker
    start.left = left
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    terminate(sorted(left()), grace=5)


def descendants_gone(spawn, timeout: float = 30.0) -> dict[int, str]:
    deadline = time.time() + timeout
    left = spawn.left()
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = spawn.left()
    return left


def log_of(proc) -> str:
    """The driver's output, with rich's line wrapping undone."""
    return " ".join(Path(proc.log_path).read_text().split())


# --- stale parents ---------------------------------------------------------------------------------


def test_stale_parent_runs_are_closed_by_pid_and_start_time(tmp_path):
    results = tmp_path / "results"
    tracker = Tracker(f"sqlite:///{results / 'mlflow.db'}", results)
    exp = tracker.experiment_id("synthetic")
    dead = subprocess.Popen(["true"])
    dead.wait()
    me, token = str(os.getpid()), start_token(os.getpid())
    cases = {
        "gone": {"driver_pid": str(dead.pid), "driver_host": host_name(), "driver_start": "x"},
        "reused": {"driver_pid": me, "driver_host": host_name(), "driver_start": "another-process"},
        "other-host": {"driver_pid": me, "driver_host": "elsewhere.example", "driver_start": token},
        "alive": {"driver_pid": me, "driver_host": host_name(), "driver_start": token},
        "legacy": {},
    }
    ids = {}
    for name, tags in cases.items():
        ids[name] = tracker.client.create_run(exp, run_name=name, tags={"kind": "invocation", **tags}).info.run_id
    child_of = {p: tracker.client.create_run(exp, tags={"runspec_key": f"k-{p}", "mlflow.parentRunId": ids[p]})
                for p in ("gone", "alive")}
    closed, foreign = tracker.close_stale_parents(exp)
    assert len(closed) == 3 and len(foreign) == 1 and "elsewhere.example" in foreign[0]
    status = {n: tracker.client.get_run(i) for n, i in ids.items()}
    for name in ("gone", "reused", "legacy"):
        assert status[name].info.status == "KILLED", name
    assert "is gone" in status["gone"].data.tags[KILLED_REASON]
    assert "start time differs" in status["reused"].data.tags[KILLED_REASON]
    assert status["other-host"].info.status == "RUNNING" and status["alive"].info.status == "RUNNING"
    assert tracker.close_stale(exp) == 1  # the child of the dead driver, not the live one's
    assert tracker.client.get_run(child_of["gone"].info.run_id).info.status == "KILLED"
    assert tracker.client.get_run(child_of["alive"].info.run_id).info.status == "RUNNING"


def test_kill_9_of_the_driver_then_rerun_leaves_nothing_running(tmp_path, spawn):
    cfg, results = write_config(tmp_path, methods=("tabular_sklearn", "late_fusion"), rates=(0.5,), seeds=(0, 1))
    victim = cell("late_fusion", 0.5, 1)
    proc = spawn(["--config", str(cfg), "--no-leaderboard"], MEDFUSION_FAULT=f"hang:{victim}")
    wait_for(lambda: (tmp_path / f"hang-{victim}").exists(), 240, "the cell to hang", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [r.info.status for r in parents(results)] == ["RUNNING"]
    rerun = spawn(["--config", str(cfg), "--no-leaderboard"])
    assert rerun.wait(timeout=300) == 0, log_of(rerun)[-3000:]
    assert "driver process" in log_of(rerun) and "is gone" in log_of(rerun)
    assert_complete(results, 6)
    killed = [p for p in parents(results) if p.info.status == "KILLED"]
    assert len(killed) == 1 and f"driver process {proc.pid}" in killed[0].data.tags[KILLED_REASON]
    attempts = [r for r in children(results) if cell_of(r) == victim]
    assert "KILLED" in [r.info.status for r in attempts] and "FINISHED" in [r.info.status for r in attempts]


def test_a_store_being_created_when_the_driver_dies_is_not_left_half_made(tmp_path, monkeypatch):
    """MLflow creates its tables in place; a kill meanwhile left a store every later start refused."""
    db = tmp_path / "results" / "mlflow.db"
    db.parent.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (db.parent / f".mlflow.db.init-{dead.pid}").write_text("left by a killed process")

    def dies_half_way(uri, artifact_root):
        with sqlite3.connect(uri[len("sqlite:///"):]) as con:
            con.execute("create table webhooks (webhook_id varchar(256))")
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "SqlAlchemyStore", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        Tracker(f"sqlite:///{db}", db.parent)
    assert not db.exists() and not list(db.parent.glob(".mlflow.db.init-*"))
    monkeypatch.undo()
    tracker = Tracker(f"sqlite:///{db}", db.parent)  # the next start creates it whole
    assert tracker.experiment_id("synthetic") and db.exists()


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_inside_a_cell_kills_it_and_the_parent_and_writes_no_leaderboard(tmp_path, monkeypatch):
    cfg, results = write_config(tmp_path, methods=("late_fusion",), rates=(0.5,), seeds=(0, 1))
    calls = []

    def interrupting(key):
        calls.append(key)
        if len(calls) == 2:  # in the second method cell, as if the user pressed Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(cell_runner, "after_epoch", interrupting)
    handler = signal.getsignal(signal.SIGINT)
    assert run_module.main(["--config", str(cfg)]) == 130
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI's handlers are removed again
    runs = children(results)
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed) == 1 and "SIGINT" in killed[0].data.tags[KILLED_REASON]
    assert [p.info.status for p in parents(results)] == ["KILLED"]
    assert not (results / "synthetic").exists() and not (results / "README.md").exists()
    monkeypatch.setattr(cell_runner, "after_epoch", lambda key: None)
    assert run_module.main(["--config", str(cfg)]) == 0
    assert_complete(results, 4)
    assert (results / "synthetic" / "leaderboard.md").exists()


def test_second_ctrl_c_exits_at_once(tmp_path, spawn):
    cfg, results = write_config(tmp_path, methods=("late_fusion",), rates=(0.5,), seeds=(0,))
    victim = cell("late_fusion", 0.5, 0)
    proc = spawn(["--config", str(cfg)], MEDFUSION_FAULT=f"stubborn:{victim}")
    wait_for(lambda: (tmp_path / f"hang-{victim}").exists(), 240, "the cell to hang", proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)
    assert proc.poll() is None, "the stubborn cell should still be cleaning up"
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert time.time() - t0 < 5
    assert "exiting now" in log_of(proc)
    tracker = Tracker(f"sqlite:///{results / 'mlflow.db'}", results)  # what the next start does
    exp = tracker.experiment_id("synthetic")
    assert len(tracker.close_stale_parents(exp)[0]) == 1 and tracker.close_stale(exp) == 1
    assert not [r for r in all_runs(results) if r.info.status == "RUNNING"]


# --- failures inside a cell -----------------------------------------------------------------------


def test_non_finite_loss_fails_that_cell_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    cfg, results = write_config(tmp_path, methods=("tabular_sklearn", "late_fusion"), rates=(0.5,), seeds=(0, 1))
    victim = cell("late_fusion", 0.5, 0)
    monkeypatch.setenv("MEDFUSION_FAULT", f"nan:{victim}")
    assert run_module.main(["--config", str(cfg)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "1 cell(s) failed" in err and "non-finite loss in epoch 0" in err
    assert_complete(results, 6, failed=(victim,))
    [failed] = latest_attempts(results)[victim]
    assert failed.info.status == "FAILED"
    reason = failed.data.tags["failure_reason"]
    assert reason.startswith("FloatingPointError: non-finite loss in epoch 0") and "loss=nan" in reason
    assert [p.info.status for p in parents(results)] == ["FINISHED"]
    assert "failed" in (results / "synthetic" / "leaderboard.md").read_text()  # the summary lists it


@pytest.mark.parametrize("how", ["disk-full", "unwritable-artifacts"])
def test_artifacts_that_cannot_be_written_stop_the_grid_with_one_error(tmp_path, monkeypatch, capsys, how):
    cfg, results = write_config(tmp_path, methods=("late_fusion",), rates=(0.5,), seeds=(0, 1))
    victim = cell("late_fusion", 0.5, 0)
    if how == "disk-full":
        monkeypatch.setenv("MEDFUSION_FAULT", f"enospc:{victim}")
        expected = "No space left on device"
    else:  # a real OSError: the experiment's artifact folder is a file
        (results / "mlartifacts").mkdir(parents=True)
        (results / "mlartifacts" / "medfusion-synthetic").write_text("not a folder")
        expected = str(results / "mlartifacts" / "medfusion-synthetic")
    assert run_module.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot write" in errors[0] and expected in errors[0], err[-2000:]
    assert "Traceback" not in err
    runs = children(results)
    assert all(r.info.status == "FAILED" for r in runs)  # no FINISHED run without its artifacts
    assert all("StorageError" in r.data.tags["failure_reason"] for r in runs)
    assert len(runs) == (1 if how == "disk-full" else 0)  # unwritable: the parent's config.yaml fails first
    assert [p.info.status for p in parents(results)] == ["FAILED"]
    assert not (results / "synthetic").exists()
    if how == "disk-full":
        monkeypatch.delenv("MEDFUSION_FAULT")
        assert run_module.main(["--config", str(cfg)]) == 0
        assert_complete(results, 4)
        client, _ = store(results)
        for run in children(results):
            if run.info.status == "FINISHED" and run.data.tags["method"] == "late_fusion":
                names = {a.path for a in client.list_artifacts(run.info.run_id)}
                assert {"predictions.npz", "model_state_dict.pt", "history.json"} <= names


def test_unwritable_results_directory_is_one_clear_error(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results directory should be")
    cfg, _ = write_config(tmp_path, methods=("tabular_sklearn",), rates=(0.5,), seeds=(0,), results=blocker)
    assert run_module.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and f"cannot write to the results directory {blocker}" in err
    assert "Traceback" not in err


# --- leaderboards ---------------------------------------------------------------------------------


def test_leaderboards_of_another_store_never_overwrite_the_default_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg, _ = write_config(tmp_path, methods=("tabular_sklearn",), rates=(0.5,), seeds=(0,), results="")
    default_board = tmp_path / "results" / "synthetic" / "leaderboard.md"
    default_board.parent.mkdir(parents=True)
    default_board.write_text("the default store's leaderboard")
    other = tmp_path / "other"
    other.mkdir()
    assert run_module.main(["--config", str(cfg), "--tracking-uri", f"sqlite:///{other / 'mlflow.db'}"]) == 0
    assert "leaderboards of this store go to" in " ".join(capsys.readouterr().err.split())
    assert (other / "synthetic" / "leaderboard.md").exists()
    assert default_board.read_text() == "the default store's leaderboard"
    # The leaderboard CLI follows the same rule; a server URI needs --results-dir, said up front.
    assert leaderboard_module.main(["--tracking-uri", f"sqlite:///{other / 'mlflow.db'}"]) == 0
    assert default_board.read_text() == "the default store's leaderboard"
    assert leaderboard_module.main(["--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert run_module.main(["--config", str(cfg), "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("pass --results-dir") == 2
    assert default_board.read_text() == "the default store's leaderboard"


def test_an_interrupted_leaderboard_build_leaves_the_old_files(tmp_path, monkeypatch):
    cfg, results = write_config(tmp_path, methods=("tabular_sklearn",), rates=(0.5,), seeds=(0,))
    assert run_module.main(["--config", str(cfg)]) == 0
    board = results / "synthetic" / "leaderboard.md"
    before = {p: p.read_bytes() for p in (results / "synthetic").iterdir()}
    real = publish_module.build_leaderboards

    def interrupted(uri, out, datasets, **kw):
        (out / "synthetic").mkdir(parents=True, exist_ok=True)
        (out / "synthetic" / "leaderboard.md").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_module, "build_leaderboards", interrupted)
    assert leaderboard_module.main(["--results-dir", str(results)]) == 130
    assert {p: p.read_bytes() for p in (results / "synthetic").iterdir()} == before
    assert not list(results.glob(".leaderboard-staging-*"))
    monkeypatch.setattr(publish_module, "build_leaderboards", real)
    assert leaderboard_module.main(["--results-dir", str(results)]) == 0
    assert board.read_bytes() == before[board]  # the same store gives the same bytes


# --- the local MLflow server ----------------------------------------------------------------------


OWNER = """
import sys, time
from pathlib import Path
from benchmark.tracking.server import LocalMlflowServer
server = LocalMlflowServer(Path(sys.argv[1])).start()
print("ready", server.port, flush=True)
time.sleep(600)
"""


def test_the_server_dies_with_its_driver_and_stale_servers_are_stopped(tmp_path, spawn):
    results = tmp_path / "results"
    backend = f"sqlite:///{(results / 'mlflow.db').resolve()}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), **{MARK: spawn.marker})
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(results)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        port = int(owner.stdout.readline().split()[1])
        # A second server of the same store reuses the live owner's healthy one.
        reuse = LocalMlflowServer(results).start()
        assert reuse.reused and reuse.port == port
        reuse.stop()  # never stops another owner's server
        assert len(processes_with_env(STORE_ENV, backend)) == 2  # mlflow server + its uvicorn
        owner.send_signal(signal.SIGKILL)  # the driver dies: its server follows (parent-death signal)
        owner.wait(timeout=30)
        wait_for(lambda: not processes_with_env(STORE_ENV, backend), 30, "the server to die with its driver")
    finally:
        if owner.poll() is None:
            owner.kill()
    # An orphaned uvicorn (its mlflow parent SIGKILLed, then its driver) is found and stopped by
    # the next start.
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(results)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        owner.stdout.readline()
        os.kill(json.loads((results / "mlflow.db-server.json").read_text())["pid"], signal.SIGKILL)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    finally:
        if owner.poll() is None:
            owner.kill()
    time.sleep(1)
    orphans = processes_with_env(STORE_ENV, backend)
    assert len(orphans) == 1 and "uvicorn" in next(iter(orphans.values()))
    second = LocalMlflowServer(results)
    try:
        second.start()
        assert any("stopped 1 stale" in note for note in second.notes)
        state = json.loads(second.state_file.read_text())
        assert state["pid"] == second.process.pid and state["backend_uri"] == backend
        assert not set(orphans) & set(processes_with_env(STORE_ENV, backend))
        # Died mid-grid: restarted on the same port; a restart that fails is one clear error.
        port = second.port
        os.killpg(second.process.pid, signal.SIGKILL)
        second.process.wait(timeout=10)
        assert second.ensure_running() and second.port == port and second.running(probe=True)
        os.killpg(second.process.pid, signal.SIGKILL)
        second.process.wait(timeout=10)
        second.launch = lambda timeout=120: (_ for _ in ()).throw(BenchmarkError("port taken"))
        with pytest.raises(TrackingUnavailable, match="could not be restarted .*rerun the same command"):
            second.ensure_running()
    finally:
        LocalMlflowServer.stop(second)
    assert not processes_with_env(STORE_ENV, backend)


# --- Ray: a killed driver, a dying server, a failing cell -----------------------------------------


def test_ray_kill_9_of_the_driver_leaves_no_orphan_and_the_rerun_survives_a_server_death(tmp_path, spawn):
    pytest.importorskip("ray")
    cfg, results = write_config(tmp_path, methods=("tabular_sklearn", "late_fusion"), rates=(0.5,), seeds=(0, 1))
    first, second = cell("late_fusion", 0.5, 0), cell("late_fusion", 0.5, 1)
    ray_args = ["--config", str(cfg), "--executor", "ray", "--workers", "2"]
    proc = spawn(ray_args + ["--no-leaderboard"], MEDFUSION_FAULT=f"hang:{first},hang:{second}")
    wait_for(lambda: all((tmp_path / f"hang-{k}").exists() for k in (first, second)), 300,
             "both workers to hang", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = descendants_gone(spawn)  # mlflow server, uvicorn, Ray's processes and workers
    assert not left, left
    # The rerun resumes; its MLflow server is killed while a cell is in flight and restarted; the
    # other cell's loss is NaN (FAILED with the reason, the grid goes on).
    rerun = spawn(ray_args, MEDFUSION_FAULT=f"pause:{first},nan:{second}")
    wait_for(lambda: (tmp_path / f"pause-{first}").exists(), 300, "a cell in flight", rerun)
    os.killpg(json.loads((results / "mlflow.db-server.json").read_text())["pid"], signal.SIGKILL)
    wait_for(lambda: "restarted on" in log_of(rerun), 180, "the server restart", rerun)
    (tmp_path / f"release-{first}").touch()
    assert rerun.wait(timeout=400) == 1, log_of(rerun)[-3000:]
    log = log_of(rerun)
    assert "1 cell(s) failed" in log and "non-finite loss" in log
    assert "driver process" in log and "is gone" in log  # the killed invocation was closed
    assert_complete(results, 6, failed=(second,))
    assert "FAILED" in [r.info.status for r in latest_attempts(results)[second]]
    assert not descendants_gone(spawn)
    assert not (results / "mlflow.db-server.json").exists()
