"""Soak test of crash safety (#21): kill a real grid N times at random points, then let it finish.

Usage: python benchmarks/soak_kill_resume.py [--kills 5] [--executor local|ray|both]
           [--grid small|tiny] [--workers 2] [--seed 0] [--keep DIR]

For each executor, in a fresh results folder: start ``python -m benchmark.run`` and SIGKILL the
driver (only the driver: ``kill -9 <pid>``) at a random point, N times; odd kills at a random
time after the start (start-up, the MLflow server or Ray starting, the first cells), even kills a
random 0-6 s after the next cell finished (mid-grid, a cell in flight).  After each kill, every
process the attempt started must be gone within 30 s (found by a marker variable in their
environment, and by the driver's session: each driver is started in a session of its own).
Then one final rerun must finish, and the checks are:

* every cell of the grid FINISHED exactly once;
* no RUNNING run left (children nor parents), every killed invocation closed as KILLED;
* no orphan process (after each kill and after the final rerun), no stale server state file;
* mask hashes unchanged: every attempt of a (rate, seed) group logged the hashes of an
  uninterrupted preparation of the same data, and the mask files on disk still have them.

Prints a table (executor, kills, cells, FINISHED once, RUNNING left, orphans, mask hashes
unchanged, wall time) and exits 1 on any violation.  ``--grid small`` is tabular_sklearn,
late_fusion and early_fusion x rates {0, 0.5} x 3 seeds with the Bayes oracle (24 cells, the
default 5 epochs); ``tiny`` is the test suite's tiny data (12 cells, 1 epoch).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmark.cells.runner import CellRunner  # noqa: E402
from benchmark.config import load_config  # noqa: E402
from benchmark.grid import build_grid  # noqa: E402
from benchmark.tracking.processes import processes_in_session, processes_with_env, terminate  # noqa: E402

MARK = "MEDFUSION_SOAK"


def grid_config(grid: str, results: Path) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    cfg["dataset"] = {"name": cfg["dataset"], "options": {"cache_dir": str(results / "cache")}}
    cfg["methods"] = ["tabular_sklearn", "late_fusion", "early_fusion"]
    cfg["missing"]["rates"] = [0.0, 0.5]
    if grid == "tiny":
        cfg["methods"] = ["tabular_sklearn", "late_fusion"]
        cfg["seeds"] = [0, 1]
        cfg["dataset"]["options"].update(n_train=96, n_val=48, n_test=96, sigma_pix=0.1, mc_samples=20000)
        cfg["encoders"]["tabular"] = {"hidden": [16], "dim": 16}
        cfg["training"].update(max_epochs=1, batch_size=32)
    cfg["training"]["threads"] = 1
    cfg["results_dir"] = str(results)
    return cfg


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def finished_cells(db: Path) -> int:
    rows = query(db, "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                     "where t.key = 'runspec_key' and r.status = 'FINISHED'")
    return rows[0][0] if rows else 0


def leftovers(marker: str, sessions: list[int]) -> dict[int, str]:
    """Processes of the attempts: the marker in their environment, or the session of their driver
    (each driver runs in a session of its own; Ray's agents blank their environment)."""
    found = processes_with_env(MARK, marker)
    for session in sessions:
        found.update(processes_in_session(session))
    return found


def wait_orphans(marker: str, sessions: list[int], timeout: float = 30.0) -> dict[int, str]:
    deadline = time.time() + timeout
    left = leftovers(marker, sessions)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = leftovers(marker, sessions)
    return left


def reference_hashes(cfg: dict, scratch: Path) -> dict[tuple[float, int], dict[str, str]]:
    """Mask hashes of every (rate, seed) group from one uninterrupted preparation (own data cache)."""
    cfg = {**cfg, "results_dir": str(scratch), "dataset": {**cfg["dataset"], "options": {
        **cfg["dataset"]["options"], "cache_dir": str(scratch / "cache")}}}
    scratch.mkdir(parents=True)
    (scratch / "grid.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_config(str(scratch / "grid.yaml"))
    runner = CellRunner(cfg.dataset, str(scratch), "", "", "")
    out = {}
    for spec in build_grid(cfg, with_oracle=True):
        group = (spec.missing.rate, spec.seed)
        if group not in out:
            out[group] = dict(runner.prepared(spec)[0].mask_hashes)
    return out


def soak(executor: str, kills: int, grid: str, workers: int, rng: random.Random, root: Path) -> dict:
    results = root / executor / "results"
    results.mkdir(parents=True)
    cfg_path = root / executor / "grid.yaml"
    config = grid_config(grid, results)
    cfg_path.write_text(yaml.safe_dump(config))
    expected = {s.key(): s for s in build_grid(load_config(str(cfg_path)), with_oracle=True)}
    reference = reference_hashes(config, root / executor / "reference")
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MEDFUSION_FAULT")}
    env.update(PYTHONPATH=str(REPO), MLFLOW_DISABLE_TELEMETRY="true", **{MARK: marker})
    cmd = [sys.executable, "-m", "benchmark.run", "--config", str(cfg_path), "--no-leaderboard"]
    if executor == "ray":
        cmd += ["--executor", "ray", "--workers", str(workers)]
    db = results / "mlflow.db"
    orphans: dict[int, str] = {}
    notes, killed_pids, sessions = [], [], []
    started = time.time()
    for i in range(kills):
        log = open(root / executor / f"attempt-{i}.log", "w")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        sessions.append(proc.pid)
        t0, before = time.time(), finished_cells(db)
        if i % 2 == 0:  # a random time after the start
            delay = rng.uniform(1.0, 20.0 if executor == "local" else 45.0)
            while time.time() - t0 < delay and proc.poll() is None:
                time.sleep(0.1)
            how = f"{delay:.1f} s after start"
        else:  # a random time after the next cell finished: mid-grid
            while finished_cells(db) <= before and proc.poll() is None and time.time() - t0 < 900:
                time.sleep(0.3)
            delay = rng.uniform(0.0, 6.0)
            time.sleep(delay)
            how = f"{delay:.1f} s after cell {finished_cells(db)} finished"
        if proc.poll() is not None:
            notes.append(f"attempt {i} ended by itself (status {proc.returncode}) before its kill")
        else:
            os.kill(proc.pid, signal.SIGKILL)
            killed_pids.append(proc.pid)
        proc.wait()
        log.close()
        left = wait_orphans(marker, sessions)
        if left:
            orphans.update(left)
            terminate(sorted(left))  # so the next attempt starts clean; still counted
        print(f"  {executor} kill {i + 1}/{kills}: {how}; {finished_cells(db)}/{len(expected)} finished; "
              f"{len(left)} orphan(s)", flush=True)
    log = open(root / executor / "final.log", "w")
    final = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sessions.append(final.pid)
    final.wait(timeout=7200)
    log.close()
    wall = time.time() - started
    left = wait_orphans(marker, sessions)
    orphans.update(left)
    terminate(sorted(left))
    return check(executor, results, expected, reference, final.returncode, killed_pids, orphans, notes, wall)


def check(executor: str, results: Path, expected: dict, reference: dict, code: int, killed_pids: list[int],
          orphans: dict[int, str], notes: list[str], wall: float) -> dict:
    db = results / "mlflow.db"
    runs = query(db, "select r.run_uuid, r.status from runs r")
    tags: dict[str, dict[str, str]] = {}
    for run_id, key, value in query(db, "select run_uuid, key, value from tags"):
        tags.setdefault(run_id, {})[key] = value
    finished: dict[str, int] = {}
    running = 0
    masks_ok = True
    for run_id, status in runs:
        t = tags.get(run_id, {})
        running += status == "RUNNING"
        key = t.get("runspec_key")
        if key is None:
            continue
        if status == "FINISHED":
            finished[key] = finished.get(key, 0) + 1
        spec = expected.get(key)
        logged = {k[len("mask_sha256_"):]: v for k, v in t.items() if k.startswith("mask_sha256_")}
        if spec is not None and logged and logged != reference[(spec.missing.rate, spec.seed)]:
            masks_ok = False
            notes.append(f"mask hashes of {spec.label()} (run {run_id}) differ from the reference")
    on_disk = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (results / "masks").glob("*.csv")}
    if not {h for group in reference.values() for h in group.values()} <= on_disk:
        masks_ok = False
        notes.append("a mask file on disk no longer has its reference hash")
    once = all(finished.get(k) == 1 for k in expected) and len(finished) == len(expected)
    # Every invocation a kill left behind (a kill during start-up may precede its parent run) is
    # closed as KILLED with the reason.
    killed = {str(pid) for pid in killed_pids}
    status_of = dict(runs)
    unclosed = [run_id for run_id, t in tags.items() if t.get("kind") == "invocation" and t.get("driver_pid") in killed
                and (status_of.get(run_id) != "KILLED" or "killed_reason" not in t)]
    if unclosed:
        notes.append(f"killed invocation(s) not closed as KILLED with killed_reason: {unclosed}")
    stale_state = list(results.glob("*-server.json"))
    if stale_state:
        notes.append(f"stale server state file(s): {[p.name for p in stale_state]}")
    if code != 0:
        notes.append(f"the final rerun exited with status {code}")
    for pid, cmd in orphans.items():
        notes.append(f"orphan {pid}: {cmd[:100]}")
    ok = once and running == 0 and not orphans and masks_ok and code == 0 and not unclosed and not stale_state
    return {"executor": executor, "kills": len(killed_pids), "cells": len(expected),
            "finished once": f"{sum(1 for k in expected if finished.get(k) == 1)}/{len(expected)}",
            "RUNNING left": running, "orphans": len(orphans), "mask hashes unchanged": "yes" if masks_ok else "NO",
            "wall": f"{wall:.0f} s", "ok": ok, "notes": notes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--executor", choices=["local", "ray", "both"], default="both")
    p.add_argument("--grid", choices=["small", "tiny"], default="small")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=None, help="seed of the random kill points (default: random)")
    p.add_argument("--keep", type=Path, default=None, help="keep the result folders and logs here")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10 ** 6)
    rng = random.Random(seed)
    executors = ["local", "ray"] if args.executor == "both" else [args.executor]
    load = os.getloadavg()
    print(f"soak: {args.kills} kills per executor, grid {args.grid}, seed {seed}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        root = args.keep or Path(scratch)
        for executor in executors:
            rows.append(soak(executor, args.kills, args.grid, args.workers, rng, root))
    load = os.getloadavg()
    columns = ["executor", "kills", "cells", "finished once", "RUNNING left", "orphans", "mask hashes unchanged",
               "wall"]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "|".join(" --- " for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for row in rows:
        for note in row["notes"]:
            print(f"{row['executor']}: {note}")
    bad = [r["executor"] for r in rows if not r["ok"]]
    print("FAIL: " + ", ".join(bad) if bad else "PASS", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
