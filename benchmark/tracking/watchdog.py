"""The driver's watchdog: when the driver dies, whatever it started dies too.

``python -I -S watchdog.py <driver pid> <NAME> <value>`` (standard library only, no project import,
so it starts in milliseconds).  While the driver lives, the watchdog records, once a second, every
descendant of the driver that appeared after the watchdog started (pid and start time): the MLflow
server and its uvicorn, Ray's GCS, raylet, agents and workers.  The driver also puts ``NAME=value``
in its environment before it starts anything, which those processes inherit.  When the driver is
gone (a parent-death signal, SIGTERM, on Linux; and a poll of the parent once a second), or when
the driver stops the watchdog with SIGTERM at the end of the grid, the watchdog sends SIGTERM to
every recorded process still running (same start time), every process carrying ``NAME=value`` and
whatever those started, then SIGKILL to those still there after a grace period, and exits.

Why both: Ray's fate sharing covers its core processes, but its dashboard and runtime-env agents
can outlive a killed driver (they watch the raylet only once their start-up completed, and their
exit may hang on the dead GCS), and they rename themselves (``setproctitle``), which blanks their
``/proc/<pid>/environ``: only the process tree recorded beforehand finds them.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

GRACE_SECONDS = 8.0
Table = dict  # pid -> (ppid, start time, state)


def table() -> Table:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            out[int(entry)] = (int(fields[1]), fields[19], fields[0])
        except (OSError, IndexError, ValueError):
            continue
    return out


def descendants(roots: set[int], procs: Table) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def marked(name: str, value: str, procs: Table) -> set[int]:
    wanted = f"{name}={value}".encode()
    found = set()
    for pid in procs:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if wanted in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            continue
    return found


def targets(known: dict[int, bytes], name: str, value: str, exclude: set[int]) -> set[int]:
    procs = {p: v for p, v in table().items() if v[2] not in (b"Z", b"X")}
    found = {p for p, start in known.items() if p in procs and procs[p][1] == start}
    found |= marked(name, value, procs)
    found |= descendants(found, procs)
    return found - exclude


def sweep(known: dict[int, bytes], name: str, value: str, exclude: set[int]) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 3.0)):
        found = targets(known, name, value, exclude)
        for pid in found:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while found and time.time() < deadline:
            time.sleep(0.2)
            found = targets(known, name, value, exclude)
        if not found:
            return


def main(driver: int, name: str, value: str) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    me = os.getpid()
    procs = table()
    before = {(p, procs[p][1]) for p in descendants({driver}, procs)}  # the driver's own, not the grid's
    known: dict[int, bytes] = {}
    while not stop and os.getppid() == driver:
        procs = table()
        for pid in descendants({driver}, procs) - {me}:
            if (pid, procs[pid][1]) not in before:
                known[pid] = procs[pid][1]
        time.sleep(1.0)
    sweep(known, name, value, {me, driver} | {p for p, _ in before})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
