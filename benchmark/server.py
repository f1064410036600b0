"""``python -m benchmark.server`` (``make server``): a local MLflow tracking server until Ctrl-C."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from benchmark.tracking.server import LocalMlflowServer


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.server",
                                description="Run a local MLflow tracking server on 127.0.0.1 backed by "
                                            "<results-dir>/mlflow.db (Ctrl-C stops it).")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--port", type=int, default=5001)
    args = p.parse_args(argv)
    server = LocalMlflowServer(Path(args.results_dir), args.port)
    try:
        server.start()
        print(f"MLflow tracking server: {server.uri}  (use --tracking-uri {server.uri})", flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
