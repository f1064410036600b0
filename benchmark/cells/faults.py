"""Fault injection for the crash-safety tests (``tests/test_faults.py``, ``benchmarks/soak_kill_resume.py``).

Environment variables, read in whichever process runs the cell (the Ray executor forwards them):

* ``MEDFUSION_FAIL_ONCE=<runspec key>``: the cell's process dies (``os._exit(1)``) after its first
  epoch, once (a marker ``failed-<key>`` in ``MEDFUSION_FAIL_DIR`` remembers it), as a crashed
  Ray worker would;
* ``MEDFUSION_FAULT=<kind>:<key>[,<kind>:<key>...]`` (``<key>`` may be ``*``), kinds:
  ``hang`` - after its first epoch the cell touches ``hang-<key>`` in ``MEDFUSION_FAIL_DIR`` and
  sleeps until it is interrupted or killed; ``stubborn`` - the same, but it keeps sleeping after a
  first Ctrl-C (a slow clean-up: the second Ctrl-C must exit at once); ``pause`` - after its first
  epoch the cell touches ``pause-<key>`` and waits until ``release-<key>`` exists (a cell in
  flight while the test breaks something else); ``nan`` - every training
  step returns a NaN loss; ``enospc`` - logging ``predictions.npz`` fails with "No space left on
  device".

Nothing here runs unless those variables are set.
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FAULT_ENV = ("MEDFUSION_FAIL_ONCE", "MEDFUSION_FAIL_DIR", "MEDFUSION_FAULT")


def faults(key: str) -> set[str]:
    """The fault kinds injected into the cell ``key``."""
    out = set()
    for item in os.environ.get("MEDFUSION_FAULT", "").split(","):
        kind, _, target = item.strip().partition(":")
        if kind and target in (key, "*"):
            out.add(kind)
    return out


def marker_dir() -> Path:
    return Path(os.environ.get("MEDFUSION_FAIL_DIR", tempfile.gettempdir()))


def after_epoch(key: str) -> None:
    """Called by the cell after each epoch."""
    if os.environ.get("MEDFUSION_FAIL_ONCE") == key:
        marker = marker_dir() / f"failed-{key}"
        if not marker.exists():
            marker.touch()
            os._exit(1)  # die mid-run, as a crashed worker would
    kinds = faults(key)
    if "pause" in kinds:
        (marker_dir() / f"pause-{key}").touch()
        while not (marker_dir() / f"release-{key}").exists():
            time.sleep(0.2)
    if "hang" in kinds or "stubborn" in kinds:
        (marker_dir() / f"hang-{key}").touch()
        while True:
            try:
                time.sleep(3600)
            except KeyboardInterrupt:
                if "stubborn" not in kinds:
                    raise


def with_faults(method: Any, key: str) -> Any:
    """The method, with a NaN loss in every training step when ``nan`` is injected."""
    if "nan" not in faults(key):
        return method
    step = method.training_step

    def nan_step(batch: Any, stage: Any) -> dict[str, torch.Tensor]:
        losses = dict(step(batch, stage))
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    method.training_step = nan_step
    return method


def before_artifact(key: str, name: str, destination: str) -> None:
    """Called before an artifact is logged."""
    if "enospc" in faults(key) and name == "predictions.npz":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), destination)
