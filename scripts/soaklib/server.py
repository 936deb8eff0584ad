"""``liaison serve`` as a child process the soak can watch and always end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .errors import SoakError
from .procfs import group_members, proc_children, proc_cmdline

SERVER_STOP_TIMEOUT = 60.0
WORKER_MODULE = "session.worker_child"  # the worker runs as `python -m session.worker_child FD`


class ServerProcess:
    """``liaison serve`` in its own session/process group, so it and its descendants can be found and ended."""

    def __init__(self, command: list[str], cwd: Path, log_dir: Path) -> None:
        self.command = command
        self.out_path = log_dir / "server.stdout"
        self.err_path = log_dir / "server.stderr"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, start_new_session=True)
        self.pid = self.proc.pid
        self.pgid = self.pid  # start_new_session: the server leads its own group
        self.exit: dict[str, Any] = {}

    @property
    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc.poll() is None

    def wait_url(self, timeout: float) -> str:
        """The WebSocket URL the server prints once it serves; SoakError if it exits or is silent for ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.out_path.read_text(errors="replace")
            match = re.search(r"WebSocket:\s*(ws://\S+)", text)
            if match:
                return match.group(1)
            if not self.alive:
                raise SoakError(f"the server exited (code {self.proc.returncode}) before serving:\n"
                                f"{self.tail()}")
            time.sleep(0.1)
        raise SoakError(f"the server printed no WebSocket URL within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the server's stdout and stderr, to explain a failure."""
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        err = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return (out[-chars // 3:] + err[-chars:]).strip()

    def worker_pid(self) -> int | None:
        """The pid of the session worker among the server's children (None when there is none)."""
        for pid in proc_children(self.pid):
            if WORKER_MODULE in proc_cmdline(pid):
                return pid
        return None

    def stop(self, timeout: float = SERVER_STOP_TIMEOUT) -> dict[str, Any]:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL the group; then end any process left in it."""
        if self.exit:
            return self.exit
        started = time.monotonic()
        killed = False
        if self.alive:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
            except KeyboardInterrupt:  # a second Ctrl+C: do not wait any longer
                killed = True
            if killed:
                self._kill_group()
                self.proc.wait(10)
        exit_seconds = time.monotonic() - started
        time.sleep(0.5)  # children (worker, Xvfb) get a moment to exit after their parent
        left = [{"pid": pid, "cmdline": " ".join(proc_cmdline(pid))[:200]} for pid in group_members(self.pgid)]
        for item in left:  # ours (the server's process group): end them, and say so
            try:
                os.kill(item["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.exit = {"code": self.proc.returncode, "seconds": round(exit_seconds, 3), "killed": killed,
                     "left_behind": left}
        return self.exit

    def _kill_group(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def emergency_kill(self) -> None:
        """atexit fallback: never leave the server running."""
        if not self.exit and self.alive:
            self._kill_group()

