"""A local MLflow tracking server, so many processes never write one SQLite file.

With more than one worker, runs go through ``mlflow server`` backed by the SQLite file: the server
is the only writer of the database.  Artifacts keep going straight to the experiment's
``file://`` artifact location under ``results/``, which every local worker can write.

Crash safety:

* the server cannot outlive the process that started it: it is launched through
  :func:`~benchmark.tracking.processes.bound_to_driver` (parent-death signal SIGTERM, which
  ``mlflow server`` forwards to its uvicorn) in its own session (Ctrl-C in the terminal reaches
  the driver only, which then stops the server);
* a state file next to the SQLite store (``<db>-server.json``, e.g. ``results/mlflow.db-server.json``)
  records its pid, start token, port, backend and owner.  On start, a healthy server of the
  same backend whose owner is alive (``make server``, another grid) is reused; any other process
  this harness started for that backend whose owner is gone (found by the variables
  ``MEDFUSION_SERVER_STORE`` and ``MEDFUSION_SERVER_OWNER`` in its environment, so an orphaned
  uvicorn too) is stopped and the file replaced;
* :meth:`LocalMlflowServer.ensure_running`: a server that died mid-grid is restarted on the same
  port (workers keep their tracking URI); if that fails, :class:`TrackingUnavailable`.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmark.tracking.processes import (bound_to_driver, environment, processes_with_env, same_process,
                                          start_token, terminate, this_process)
from benchmark.tracking.store import TrackingUnavailable, ensure_store, sqlite_path
from core.errors import BenchmarkError

STORE_ENV = "MEDFUSION_SERVER_STORE"  # set in the server's environment, inherited by its uvicorn
OWNER_ENV = "MEDFUSION_SERVER_OWNER"  # "<pid>:<start token>" of the process that started it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def owner_alive(owner: str) -> bool:
    """``<pid>:<start token>`` names a live process (another grid or ``make server``)."""
    pid, _, token = owner.partition(":")
    return pid.isdigit() and same_process(int(pid), token)


def healthy(uri: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


class LocalMlflowServer:
    """``mlflow server`` on 127.0.0.1 backed by ``<results_dir>/mlflow.db``; a context manager."""

    def __init__(self, results_dir: Path, port: int | None = None, backend_uri: str | None = None) -> None:
        self.results_dir = Path(results_dir)
        self.requested_port = port
        self.port = port or free_port()
        self.backend_uri = backend_uri or f"sqlite:///{(self.results_dir / 'mlflow.db').resolve()}"
        self.process: subprocess.Popen | None = None
        self.reused = False      # another live owner's server: used, never stopped by us
        self.reused_process: tuple[int, str | None] = (0, None)
        self.restarts = 0
        self.notes: list[str] = []  # what start() found (stale servers stopped, a server reused)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        db = sqlite_path(self.backend_uri)
        return Path(f"{db}-server.json") if db is not None else self.results_dir / "mlflow-server.json"

    @property
    def log_file(self) -> Path:
        return self.results_dir / "mlflow-server.log"

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 120.0) -> "LocalMlflowServer":
        self.results_dir.mkdir(parents=True, exist_ok=True)
        if self.reuse_or_clear():
            return self
        return self.launch(timeout)

    def reuse_or_clear(self) -> bool:
        """Reuse a healthy server of this backend whose owner is alive; stop every other one."""
        state = self.read_state()
        me = this_process()
        if state and state.get("backend_uri") == self.backend_uri and state.get("host") == me["host"] \
                and same_process(int(state["pid"]), state.get("token")) \
                and same_process(int(state["owner_pid"]), state.get("owner_token")) \
                and int(state["owner_pid"]) != os.getpid() and healthy(f"http://127.0.0.1:{state['port']}"):
            if self.requested_port not in (None, int(state["port"])):
                raise BenchmarkError(f"a tracking server of {self.backend_uri} already runs on port {state['port']} "
                                     f"(pid {state['pid']}, started by process {state['owner_pid']}): use it")
            self.port, self.reused = int(state["port"]), True
            self.reused_process = (int(state["pid"]), state.get("token"))
            self.notes.append(f"reusing the MLflow server {self.uri} of process {state['owner_pid']}")
            return True
        if state and state.get("host") not in (None, me["host"]):
            self.notes.append(f"{self.state_file} names a server on {state['host']}: left alone, replaced here")
        stale = {pid: cmd for pid, cmd in processes_with_env(STORE_ENV, self.backend_uri).items()
                 if not owner_alive(environment(pid).get(OWNER_ENV, ""))}
        if stale:
            terminate(sorted(stale))
            self.notes.append(f"stopped {len(stale)} stale MLflow server process(es) of this store: "
                              + ", ".join(f"{pid} ({cmd[:60]})" for pid, cmd in sorted(stale.items())))
        self.state_file.unlink(missing_ok=True)
        return False

    def launch(self, timeout: float = 120.0) -> "LocalMlflowServer":
        self.reused = False
        ensure_store(self.backend_uri)  # never let the server create the tables in place
        log = open(self.log_file, "ab")
        artifacts = (self.results_dir / "mlartifacts").resolve().as_uri()
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        # No server-side job runner: MLflow 3 otherwise forks 7 huey consumers (about 35 s of CPU
        # at start-up, measured on 2 cores) that the benchmark never uses.
        me = this_process()
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               STORE_ENV: self.backend_uri, OWNER_ENV: f"{me['pid']}:{me['token']}"}
        try:
            self.process = subprocess.Popen(bound_to_driver(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        finally:
            log.close()
        state = {"pid": self.process.pid, "token": start_token(self.process.pid) or "", "port": self.port,
                 "backend_uri": self.backend_uri, "host": me["host"], "owner_pid": me["pid"],
                 "owner_token": me["token"], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise BenchmarkError(f"mlflow server exited with status {code}; see {self.log_file}")
            if healthy(self.uri, timeout=2):
                return self
            time.sleep(0.5)
        self.stop()
        raise BenchmarkError(f"mlflow server did not answer on {self.uri} within {timeout:.0f} s; see {self.log_file}")

    def running(self, probe: bool = False) -> bool:
        """The server process is alive (and, with ``probe``, answers /health; a loaded machine may
        take seconds to answer, so only after a failed cell)."""
        if self.reused:
            alive = same_process(*self.reused_process)
        else:
            alive = self.process is not None and self.process.poll() is None
        return alive and (not probe or healthy(self.uri, timeout=10) or healthy(self.uri, timeout=20))

    def ensure_running(self, probe: bool = False) -> bool:
        """Restart a server that died (same port, same backend); True if it was restarted.
        Raises :class:`TrackingUnavailable` when it cannot be restarted."""
        if self.running(probe):
            return False
        was = "the MLflow server of another process" if self.reused else f"the MLflow server {self.uri}"
        self.stop()
        try:
            self.launch(timeout=120)
        except BenchmarkError as exc:
            raise TrackingUnavailable(f"{was} stopped and could not be restarted ({exc}); finished cells are "
                                      "kept: rerun the same command to resume") from None
        self.restarts += 1
        return True

    def stop(self) -> None:
        """Stop our server and whatever it started (its process group and the processes marked
        with its store); a reused server is left running."""
        if self.reused:
            self.reused = False
            return
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, 15)
                except ProcessLookupError:
                    pass
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, 9)
                    self.process.wait(timeout=10)
            mine = f"{os.getpid()}:{this_process()['token']}"
            leftovers = [pid for pid in processes_with_env(STORE_ENV, self.backend_uri)
                         if environment(pid).get(OWNER_ENV) == mine]
            if leftovers:
                terminate(sorted(leftovers), grace=5.0)
            state = self.read_state()
            if state and int(state.get("pid", -1)) == self.process.pid:
                self.state_file.unlink(missing_ok=True)
        self.process = None

    def __enter__(self) -> "LocalMlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
