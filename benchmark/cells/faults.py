"""Fault injection for the crash-safety tests (``tests/test_faults.py``, ``benchmarks/soak_kill_resume.py``).

Environment variables, read in whichever process runs the cell (the Ray executor forwards them):

A cell is named by its RunSpec key, by ``<method>-<rate>-seed<seed>`` (e.g.
``late_fusion-0.5-seed0``: stable while the code changes, the key is not) or by ``*``; markers
are named after the target as given (the key for ``*``).

* ``MEDFUSION_FAIL_ONCE=<cell>``: the cell's process dies (``os._exit(1)``) after its first
  epoch, once (a marker ``failed-<cell>`` in ``MEDFUSION_FAIL_DIR`` remembers it), as a crashed
  Ray worker would;
* ``MEDFUSION_FAULT=<kind>:<cell>[,<kind>:<cell>...]``, kinds:
  ``hang`` - after its first epoch the cell touches ``hang-<cell>`` in ``MEDFUSION_FAIL_DIR`` and
  sleeps until it is interrupted or killed; ``stubborn`` - the same, but it keeps sleeping after a
  first Ctrl-C (a slow clean-up: the second Ctrl-C must exit at once); ``pause`` - after its first
  epoch the cell touches ``pause-<cell>`` and waits until ``release-<cell>`` exists (a cell in
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


def cell_name(spec: Any) -> str:
    """``<method>-<rate>-seed<seed>``: a target that stays the same when the code changes (the
    RunSpec key includes the code fingerprint)."""
    return f"{spec.method}-{spec.missing.rate:g}-seed{spec.seed}"


def targeted(spec: Any, target: str) -> str | None:
    """The marker name of ``spec`` if ``target`` (a key, a cell name or ``*``) names it."""
    if target == "*":
        return spec.key()
    return target if target in (spec.key(), cell_name(spec)) else None


def faults(spec: Any) -> dict[str, str]:
    """The fault kinds injected into the cell ``spec``: kind -> marker name."""
    out = {}
    for item in os.environ.get("MEDFUSION_FAULT", "").split(","):
        kind, _, target = item.strip().partition(":")
        name = targeted(spec, target) if kind else None
        if name is not None:
            out[kind] = name
    return out


def marker_dir() -> Path:
    return Path(os.environ.get("MEDFUSION_FAIL_DIR", tempfile.gettempdir()))


def after_epoch(spec: Any) -> None:
    """Called by the cell after each epoch."""
    once = targeted(spec, os.environ.get("MEDFUSION_FAIL_ONCE", ""))
    if once is not None:
        marker = marker_dir() / f"failed-{once}"
        if not marker.exists():
            marker.touch()
            os._exit(1)  # die mid-run, as a crashed worker would
    kinds = faults(spec)
    if "pause" in kinds:
        (marker_dir() / f"pause-{kinds['pause']}").touch()
        while not (marker_dir() / f"release-{kinds['pause']}").exists():
            time.sleep(0.2)
    hang = kinds.get("hang") or kinds.get("stubborn")
    if hang is not None:
        (marker_dir() / f"hang-{hang}").touch()
        while True:
            try:
                time.sleep(3600)
            except KeyboardInterrupt:
                if "stubborn" not in kinds:
                    raise


def with_faults(method: Any, spec: Any) -> Any:
    """The method, with a NaN loss in every training step when ``nan`` is injected."""
    if "nan" not in faults(spec):
        return method
    step = method.training_step

    def nan_step(batch: Any, stage: Any) -> dict[str, torch.Tensor]:
        losses = dict(step(batch, stage))
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    method.training_step = nan_step
    return method


def before_artifact(spec: Any, name: str, destination: str) -> None:
    """Called before an artifact is logged."""
    if "enospc" in faults(spec) and name == "predictions.npz":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), destination)
