"""Start, watch and stop the three servers under test, each in its own process.

Every server gets its own process so the clients (in the bench process) never
share a GIL with the server they measure: PsychoPy's liaison shares one with
its experiment by design, ours splits server and experiment into two
processes, and the floor is one process. All three start in parallel (start-up
is the slowest part of a run), each printing ``BENCH-READY {json}`` when it
serves; a line on stdin asks it to stop, and a kill follows if it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
MARKER = "BENCH-READY "


class HostError(RuntimeError):
    pass


class Host:
    """One server subprocess; ``info`` is what it printed when ready (port, url, pids)."""

    def __init__(self, name: str, script: str, args: list[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=env, cwd=cwd, start_new_session=True,
        )
        self.started = time.perf_counter()
        self.ready_seconds: float | None = None
        self.info: dict = {}
        self._ready = threading.Event()
        self._stdout_tail: list[str] = []
        threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if MARKER in line and not self._ready.is_set():
                self.info = json.loads(line.split(MARKER, 1)[1])
                self.ready_seconds = time.perf_counter() - self.started
                self._ready.set()
            else:
                self._stdout_tail = (self._stdout_tail + [line])[-20:]
        self._ready.set()  # exited: wake the waiter, which sees no info

    def wait_ready(self, timeout: float) -> dict:
        if not self._ready.wait(timeout) or not self.info:
            self.kill()
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise HostError(f"{self.name} did not start within {timeout:.0f} s "
                            f"(exit {self.process.poll()}):\n{''.join(self._stdout_tail)}\n{tail}")
        return self.info

    @property
    def url(self) -> str:
        return self.info["url"]

    def pids(self) -> list[int]:
        """The host process and, for ours, its worker."""
        return [pid for pid in (self.info.get("pid"), self.info.get("worker_pid")) if pid]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each of this host's processes."""
        out = {}
        for label, key in (("server", "pid"), ("worker", "worker_pid")):
            pid = self.info.get(key)
            if not pid:
                continue
            try:
                times = psutil.Process(pid).cpu_times()
                out[label] = times.user + times.system
            except psutil.Error:
                pass
        return out

    def suspend(self) -> None:
        """SIGSTOP the host's process group (ours: server and worker), so an idle stack cannot
        disturb another one's measures (PsychoPy's idle SessionQueue flips the window 10 times a
        second; on 2 cores that alone inflates every other server's tail latency)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b"stop\n")
                self.process.stdin.flush()
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """Kill this host's own process group (its worker included), and only that."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)


def cpu_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, float]:
    """CPU seconds used between two ``{host: cpu_seconds()}`` snapshots, per process."""
    out = {}
    for host, procs in after.items():
        for label, value in procs.items():
            out[f"{host}.{label}"] = round(value - before.get(host, {}).get(label, 0.0), 3)
    return out


def bench_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def alone(hosts: dict[str, "Host"], name: str | None):
    """Run the block with every host but ``name`` suspended (``None``: all suspended)."""
    others = [h for n, h in hosts.items() if n != name and h.process.poll() is None]
    for host in others:
        host.suspend()
    try:
        yield
    finally:
        for host in others:
            host.resume()
