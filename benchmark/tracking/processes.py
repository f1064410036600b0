"""Processes the harness starts or finds: who is alive, and children that cannot outlive the driver.

* A process is identified by (host, pid, start token).  The token is the boot id plus the start
  time from ``/proc/<pid>/stat``, so a pid that the kernel handed to another process since is
  told apart from the process that recorded it.  Without ``/proc`` (macOS) the token is empty and
  only "the pid exists" is checked.
* :func:`bound_to_driver`: a command prefixed with a tiny launcher that sets
  ``PR_SET_PDEATHSIG=SIGTERM`` (Linux) and then ``exec``s the command, so the child receives
  SIGTERM when the driver dies, however it dies (``kill -9`` included).  The signal is sent when
  the *thread* that started the child ends, so start such children from the main thread.  The
  setting is not inherited by the child's own children: ``mlflow server`` forwards SIGTERM to
  its uvicorn, and anything else is found by :func:`processes_with_env` (each child carries a
  marker variable in its environment, which its descendants inherit).
* :func:`die_with_parent`: the same parent-death signal, set from inside a child the driver started
  itself (the local executor's ``multiprocessing`` workers).
* :func:`start_watchdog`: a watchdog process (``benchmark/tracking/watchdog.py``) that, when the
  driver dies, stops every process carrying the invocation's marker variable
  (``MEDFUSION_INVOCATION``): the MLflow server and uvicorn, Ray's processes, agents and workers.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")
INVOCATION_ENV = "MEDFUSION_INVOCATION"  # set by the grid driver, inherited by all it starts
WATCHDOG = Path(__file__).with_name("watchdog.py")
# Runs in the child before exec: parent-death signal, then the race "the driver already died".
LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:\n"
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed: errno %d' % ctypes.get_errno())\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def host_name() -> str:
    return socket.gethostname()


def boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 first); None if absent."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return []
    return text.rpartition(")")[2].split()


def start_token(pid: int) -> str | None:
    """"<boot id>:<start time>" of a live process; "" where /proc cannot tell; None if it is gone
    (a zombie counts as gone: it no longer runs anything)."""
    if not PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    fields = proc_stat(pid)
    if fields is None or (fields and fields[0] in ("Z", "X")):
        return None
    return f"{boot_id()}:{fields[19]}" if len(fields) > 19 else ""


def same_process(pid: int, token: str | None) -> bool:
    """Is the process that recorded (pid, token) still running?  A reused pid is not."""
    current = start_token(pid)
    if current is None:
        return False
    return not token or not current or current == token


def this_process() -> dict[str, str]:
    return {"pid": str(os.getpid()), "host": host_name(), "token": start_token(os.getpid()) or ""}


def bound_to_driver(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it receives SIGTERM when this process dies (Linux; unchanged elsewhere)."""
    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, str(os.getpid()), *cmd]


def die_with_parent(parent: int) -> None:
    """Called first thing in a child that ``parent`` started (a local worker process): the child
    receives SIGTERM when ``parent`` dies (Linux), and exits now if that already happened."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def environment(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes_with_env(name: str, value: str) -> dict[int, str]:
    """Live processes (not this one) whose environment has ``name=value``: pid -> command line."""
    found = {}
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if environment(pid).get(name) == value and start_token(pid) is not None:
            found[pid] = command_line(pid)
    return found


def processes_in_session(session: int) -> dict[int, str]:
    """Live processes of a session (e.g. of a driver started with ``start_new_session``): found even
    when they renamed themselves and blanked their environment (Ray's agents do)."""
    found = {}
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            fields = proc_stat(int(entry.name))
            if fields and len(fields) > 3 and fields[0] not in ("Z", "X") and int(fields[3]) == session:
                found[int(entry.name)] = command_line(int(entry.name))
    return found


def terminate(pids: list[int], grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the pids that were still running."""
    tokens = {pid: start_token(pid) for pid in pids}
    alive = [pid for pid, token in tokens.items() if token is not None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            if not same_process(pid, tokens[pid]):
                continue  # gone (its pid may already belong to another process)
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + (grace if sig == signal.SIGTERM else 5.0)
        while time.time() < deadline and any(same_process(p, tokens[p]) for p in alive):
            time.sleep(0.1)
        if not any(same_process(p, tokens[p]) for p in alive):
            break
    return alive


def start_watchdog(name: str, value: str) -> subprocess.Popen | None:
    """The watchdog of this process (None without /proc): see ``benchmark/tracking/watchdog.py``."""
    if not PROC.is_dir():
        return None
    return subprocess.Popen([sys.executable, "-I", "-S", str(WATCHDOG), str(os.getpid()), name, value],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_watchdog(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """End of the grid: the watchdog stops what is still marked (nothing, normally) and exits."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
