"""The driver's watchdog: when the driver dies, whatever it started dies too.

``python -I -S watchdog.py <driver pid> <NAME> <value>`` (standard library only, no project import,
so it starts in milliseconds).  The driver puts ``NAME=value`` in its own environment before it
starts anything (the MLflow server, Ray's GCS, raylet, agents and workers), so every process of
the grid inherits it.  The watchdog sets a parent-death signal (SIGTERM, Linux) and also polls its
parent once a second; when the driver is gone, or when the driver stops it with SIGTERM at the end
of the grid, it sends SIGTERM to every other process carrying ``NAME=value``, then SIGKILL to
those still there after a grace period, and exits.

Why: Ray's own fate sharing covers its core processes, but its dashboard and runtime-env agents
only start watching the raylet once their start-up completed; a driver killed during that
window left both running for good (seen in ``tests/test_faults.py``).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

GRACE_SECONDS = 8.0


def marked(name: str, value: str, exclude: set[int]) -> list[int]:
    wanted = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if wanted not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def sweep(name: str, value: str, exclude: set[int]) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 2.0)):
        targets = marked(name, value, exclude)
        for pid in targets:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while targets and time.time() < deadline:
            time.sleep(0.2)
            targets = marked(name, value, exclude)
        if not targets:
            return


def main(driver: int, name: str, value: str) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    while not stop and os.getppid() == driver:
        time.sleep(1.0)
    sweep(name, value, {os.getpid(), driver} if os.getppid() == driver else {os.getpid()})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
