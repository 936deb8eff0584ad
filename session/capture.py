"""Send a run's stdout and stderr to files in its folder, at the file-descriptor level.

Experiments print, PsychoPy logs to the console, and C libraries (GL, audio)
write straight to fd 1 and 2; only redirecting the descriptors catches all of
it. Used by the worker process, whose console belongs to no one else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class CapturedOutput:
    """``with CapturedOutput(run_dir):`` sends fd 1/2 to ``stdout.log``/``stderr.log``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._saved: list[tuple[int, int]] = []

    def __enter__(self) -> "CapturedOutput":
        self._flush()
        for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
            target = os.open(self.run_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
            os.close(target)
        return self

    def __exit__(self, *exc_info) -> None:
        self._flush()
        for fd, saved in reversed(self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()

    @staticmethod
    def _flush() -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
