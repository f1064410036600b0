"""Publishing leaderboards so that an interrupted build never leaves a half-written one.

The files are built into a staging folder inside the results directory (same file system), then
renamed over the old ones with Ctrl-C / SIGTERM held for the few renames.  An interruption or an
error while building leaves the previous leaderboard untouched; the staging folder is removed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmark.execution.interrupts import deferred
from benchmark.summary.build import build_leaderboards
from benchmark.summary.scenarios import build_suite
from benchmark.tracking.store import StorageError, ensure_writable

STAGING = ".leaderboard-staging-"


def publish_leaderboards(tracking_uri: str, results_dir: Path, datasets: Sequence[str], **options: Any) -> list[Path]:
    """``build_leaderboards`` (its ``options`` passed on) into ``results_dir``, all files replaced
    together at the end; returns the final paths."""
    return publish(results_dir, lambda staging: build_leaderboards(tracking_uri, staging, datasets, **options))


def publish_suite(tracking_uri: str, results_dir: Path, suite: str, mlflow_ui: str | None = None) -> list[Path]:
    """A suite's per-entry leaderboards and ``summary.*`` (``summary.scenarios.build_suite``), published
    the same way (all files replaced together at the end)."""
    return publish(results_dir, lambda staging: build_suite(tracking_uri, staging, suite, mlflow_ui))


def publish(results_dir: Path, build: Callable[[Path], list[Path]]) -> list[Path]:
    """``build(staging)`` writes into a staging folder; its files then replace those of ``results_dir``."""
    results_dir = Path(results_dir)
    ensure_writable(results_dir)
    for old in results_dir.glob(f"{STAGING}*"):  # left by a process killed while building
        if old.is_dir() and time.time() - old.stat().st_mtime > 600:
            shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=results_dir))
    try:
        # The index links the datasets whose leaderboard exists: show it the existing ones.
        for folder in results_dir.iterdir():
            if folder.is_dir() and (folder / "leaderboard.md").exists() and folder != staging:
                (staging / folder.name).mkdir(exist_ok=True)
                (staging / folder.name / "leaderboard.md").touch()
        written = build(staging)
        final = []
        with deferred():
            for path in written:
                target = results_dir / Path(path).relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                final.append(target)
        return final
    except OSError as exc:
        raise StorageError(f"cannot write the leaderboard under {results_dir.resolve()}: "
                           f"{exc.strerror or exc} ({exc.filename or results_dir})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
