"""A local MLflow tracking server, so many processes never write one SQLite file.

With more than one worker, runs go through ``mlflow server`` backed by the SQLite file: the server
is the only writer of the database.  Artifacts keep going straight to the experiment's
``file://`` artifact location under ``results/``, which every local worker can write.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.errors import BenchmarkError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalMlflowServer:
    """``mlflow server`` on 127.0.0.1 backed by ``<results_dir>/mlflow.db``; a context manager."""

    def __init__(self, results_dir: Path, port: int | None = None, backend_uri: str | None = None) -> None:
        self.results_dir = Path(results_dir)
        self.port = port or free_port()
        self.backend_uri = backend_uri or f"sqlite:///{(self.results_dir / 'mlflow.db').resolve()}"
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> "LocalMlflowServer":
        self.results_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.results_dir / "mlflow-server.log", "ab")
        artifacts = (self.results_dir / "mlartifacts").resolve().as_uri()
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        # No server-side job runner: MLflow 3 otherwise forks 7 huey consumers (about 35 s of CPU
        # at start-up, measured on 2 cores) that the benchmark never uses.
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"mlflow server exited with status {self.process.returncode}; "
                                     f"see {self.results_dir / 'mlflow-server.log'}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise BenchmarkError(f"mlflow server did not answer on {self.uri} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
        self.process = None

    def __enter__(self) -> "LocalMlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
