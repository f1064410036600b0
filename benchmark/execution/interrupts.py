"""Ctrl-C and SIGTERM during a grid: the first one cleans up, a second one exits at once.

Inside :func:`handle_interrupts` the first SIGINT or SIGTERM raises :class:`Interrupted` (a
``KeyboardInterrupt``) where the driver is, so the clean-up runs: the current cell's child run and
the invocation's parent run are closed as KILLED (``benchmark.tracking.runs``), the cells in
flight on Ray workers too, the local MLflow server is stopped and no leaderboard is built; the CLI
exits with 128 + the signal (130 for Ctrl-C).  A second signal during that clean-up exits at once
with the same status (``os._exit``): whatever is left is closed on the next start, and the
children the harness started die with the driver (parent-death signal, Ray's fate sharing).

:func:`deferred`: a few file renames that must not be cut half-way (the leaderboard's files) hold
the signals and act on them right after.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum


class State:
    received: int | None = None   # the first signal of this invocation
    installed = False


def as_interrupted(exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """The signal behind a ``KeyboardInterrupt`` that a library re-raised bare (``ray.wait`` does)."""
    if isinstance(exc, Interrupted) or State.received is None:
        return exc
    return Interrupted(State.received)


def exit_status(default: int = 130) -> int:
    return 128 + State.received if State.received is not None else default


def on_signal(signum: int, frame) -> None:
    if State.received is not None:
        os.write(2, f"\n{signal.Signals(signum).name} again: exiting now (status {128 + signum}); "
                    "what was left open is closed on the next start\n".encode())
        os._exit(128 + State.received)
    State.received = signum
    raise Interrupted(signum)


def install() -> None:
    """(Re)install the handlers, e.g. after ``ray.init`` replaced the SIGTERM one; main thread only."""
    if State.installed and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, on_signal)


@contextmanager
def handle_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    State.received, State.installed = None, True
    install()
    try:
        yield
    finally:
        State.installed = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Signals received inside the block are acted on when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        handler = previous[pending[0]]
        if callable(handler):
            handler(pending[0], None)
        elif handler == signal.SIG_DFL and pending[0] == signal.SIGINT:
            raise KeyboardInterrupt
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), pending[0])
