"""One supervisor per data folder: two servers (or a server and `liaison recover`)
writing one journal would interleave sequence numbers and fight over runs.

The lock file also names what its holder started (its worker, its Xvfb), so
the next holder can end what a crashed (``kill -9``) predecessor left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path
from typing import Any

LOCK_FILE = "liaison.lock"


class DataDirBusy(RuntimeError):
    """Another live process holds the data folder's lock (its pid is in the message)."""


class DataDirLock:
    """An exclusive, advisory lock on ``DATA/liaison.lock``; released when the process dies.

    ``previous`` is what the last holder wrote (its pid and the pids it
    noted), read before this holder overwrites it.
    """

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None
        self.previous: dict[str, Any] = {}
        self._noted: dict[str, Any] = {}

    def acquire(self) -> DataDirLock:
        """Take the lock, or raise :class:`DataDirBusy` at once if a live process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(fd, 4096, 0)).get("pid") or "another process"
            os.close(fd)
            raise DataDirBusy(f"{self.path.parent} is in use by process {holder} (a liaison server?)") from None
        self.previous = _parse(os.pread(fd, 4096, 0))
        self._fd = fd
        self._noted = {"pid": os.getpid()}
        self._write()
        return self

    def note(self, **pids: int | None) -> None:
        """Record processes this holder started (e.g. ``worker_pid``), for a successor to clean up."""
        self._noted.update(pids)
        self._write()

    def _write(self) -> None:
        if self._fd is None:
            return
        data = json.dumps(self._noted).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Let go of the lock (also happens when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _parse(raw: bytes) -> dict[str, Any]:
    text = raw.decode(errors="replace").strip()
    if text.isdigit():  # the format before pids were noted
        return {"pid": int(text)}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def end_leftovers(previous: dict[str, Any]) -> list[str]:
    """End the worker and Xvfb a dead predecessor left running; returns what was ended.

    A pid is only signalled when its command line is still what was
    started (a worker, an Xvfb), so a reused pid is never touched.
    """
    ended = []
    worker = previous.get("worker_pid")
    if isinstance(worker, int) and "session.worker_child" in _command_line(worker):
        try:
            os.killpg(worker, signal.SIGKILL)
            ended.append(f"worker {worker}")
        except (ProcessLookupError, PermissionError):
            pass
    xvfb = previous.get("xvfb_pid")
    if isinstance(xvfb, int) and "Xvfb" in _command_line(xvfb):
        try:
            os.kill(xvfb, signal.SIGTERM)
            ended.append(f"Xvfb {xvfb}")
        except (ProcessLookupError, PermissionError):
            pass
    return ended
