"""One supervisor per data folder: two servers (or a server and `liaison recover`)
writing one journal would interleave sequence numbers and fight over runs."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "liaison.lock"


class DataDirBusy(RuntimeError):
    """Another live process holds the data folder's lock; the message names its pid."""

    pass


class DataDirLock:
    """An exclusive, advisory lock on ``DATA/liaison.lock``; released when the process dies."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "DataDirLock":
        """Take the lock without waiting (creating the folder) and write our pid into it; returns self.

        Raises DataDirBusy if another process holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusy(f"{self.path.parent} is in use by process {holder} (a liaison server?)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go; harmless when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DataDirLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
