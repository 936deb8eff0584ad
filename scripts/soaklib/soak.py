"""One soak from start to end: set up, start the server, drive the run, check what it left behind.

:class:`Soak` holds the soak's state (the report reads it) and runs its
phases; the parts live in the modules next to it: the experiment, the
server process, the peers and the command load, the sampler, the checks,
the memory analysis and the report.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import math
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import checks, memory
from .errors import SoakError
from .experiment import KEY, calibrate, write_experiment
from .load import CommandLoad
from .peer import Peer
from .sampler import Sampler
from .server import ServerProcess
from .stats import r3

REPO = Path(__file__).resolve().parents[2]


class Soak:
    """One soak configured by the command line's ``args`` (minutes, rate, clients, cmd_rate, interval, warmup).

    Call :meth:`prepare`, :meth:`start_server`, ``asyncio.run(soak.drive())``,
    then :meth:`check_after_stop` once the server has stopped and :meth:`evaluate`. ``problems``
    collects findings about the server, ``notes`` everything else worth saying.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration = args.minutes * 60.0
        self.interval = args.interval
        self.warmup = min(args.warmup, self.duration / 2)
        self.token = "soak-" + secrets.token_hex(12)
        self.tmp: Path | None = None
        self.root: Path | None = None
        self.data: Path | None = None
        self.server: ServerProcess | None = None
        self.sampler: Sampler | None = None
        self.url: str | None = None
        self.observers: list[Peer] = []
        self.controller: Peer | None = None
        self.load = CommandLoad(args.cmd_rate)
        self.run_id: str | None = None
        self.run_info: dict[str, Any] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.calibration: dict[str, Any] | None = None
        self.replay_size: int | None = None
        self.run_t0: float | None = None  # monotonic time the run was accepted
        self.worker_pids: list[int] = []
        self.checks: dict[str, Any] = {}
        self.status = "not started"
        self.started_at = time.time()
        self.loadavg_start = os.getloadavg()

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Every sample taken so far, oldest first."""
        return self.sampler.samples if self.sampler is not None else []

    # --- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write the experiment into a fresh temporary ROOT, read the replay buffer's size, calibrate."""
        self.tmp = Path(tempfile.mkdtemp(prefix="liaison-soak-"))
        self.root = self.tmp / "root"
        self.data = self.tmp / "data"
        self.root.mkdir()
        experiment = write_experiment(self.root)
        try:
            from liaison.server.config import ServerConfig

            self.replay_size = ServerConfig.__dataclass_fields__["replay_size"].default
        except Exception:  # noqa: BLE001 - only used to explain growth
            self.replay_size = None
        info = {"participant": "soak", "session": "001", "seconds": self.seconds, "rate": self.rate_value}
        try:
            self.calibration = calibrate(experiment, info, cwd=self.tmp)
        except Exception as exc:  # noqa: BLE001 - the soak still runs; the slope just lacks context
            self.notes.append(f"row-size calibration failed: {exc}")

    @property
    def seconds(self) -> float:
        """How long the experiment may run: longer than the soak, which stops it."""
        return math.ceil(self.duration + 600)

    @property
    def rate_value(self) -> float | int:
        """``--rate`` as the experiment info gets it (an int when it is whole)."""
        rate = self.args.rate
        return int(rate) if float(rate).is_integer() else rate

    def start_server(self) -> None:
        """Start ``liaison serve`` on ROOT and wait for its URL and its worker; SoakError if either is missing."""
        liaison = Path(sys.executable).parent / "liaison"
        if not liaison.exists():
            liaison = REPO / ".venv" / "bin" / "liaison"
        command = [str(liaison), "serve", str(self.root), "--port", "0", "--token", self.token,
                   "--data-dir", str(self.data), "--window-size", "320x240", "--frame-rate", "60",
                   "--log-level", "warning"]
        self.server = ServerProcess(command, cwd=self.tmp, log_dir=self.tmp)
        atexit.register(self.server.emergency_kill)
        self.sampler = Sampler(self.server, self.data, self.worker_pids, self.problems)
        self.url = self.server.wait_url(timeout=240)
        deadline = time.monotonic() + 30
        while (pid := self.server.worker_pid()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is None:
            raise SoakError("the server serves but no session worker process was found among its children")
        self.worker_pids.append(pid)

    def take_sample(self, phase: str) -> dict[str, Any]:
        """A sample now (see :class:`Sampler`), ``t`` counted from the run's start (0 before it)."""
        t = time.monotonic() - self.run_t0 if self.run_t0 is not None else 0.0
        return self.sampler.take(phase, t, self.observers, self.controller, self.load.take_window())


    # --- the run --------------------------------------------------------------------------
    async def drive(self) -> None:
        """Connect the controller and observers, run the experiment for the soak's duration, stop it.

        SIGTERM and SIGHUP cancel it; the clients are closed in every case.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        self.controller = Peer("soak-controller", "controller")
        self.observers = [Peer(f"soak-observer-{i}", "observer") for i in range(self.args.clients)]
        try:
            await asyncio.gather(*(p.connect(self.url, self.token) for p in (self.controller, *self.observers)))
            self.status = "connected"
            self.take_sample("idle")
            await self._run()
        finally:
            await asyncio.gather(*(p.close() for p in (self.controller, *self.observers) if p is not None),
                                 return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _run(self) -> None:
        """Start the run, sample every interval under the command load until the soak's end, then stop it."""
        ctrl = self.controller
        exp_info = {"seconds": self.seconds, "rate": self.rate_value}
        reply, _ = await ctrl.request("run", {"key": KEY, "exp_info": exp_info}, timeout=120)
        if not reply.get("ok"):
            raise SoakError(f"the server refused to start the run: {reply.get('error')}")
        self.run_t0 = time.monotonic()
        self.run_id = reply["result"]["run_id"]
        self.status = "running"
        self.run_info = {"run_id": self.run_id, "exp_info": exp_info}
        print(f"run {self.run_id} started: {self.rate_value} rows/s for {self.args.minutes:g} min, "
              f"{len(self.observers)} observers, 1 controller ({self.load.rate:g} commands/s), "
              f"sample every {self.interval:g} s, warm-up {self.warmup:g} s", flush=True)
        await self._wait(lambda: self.run_id in ctrl.started or self.run_id in ctrl.ended, 60,
                         "no run_started event within 60 s")
        self.take_sample("run")
        commands = asyncio.get_running_loop().create_task(self.load.run(ctrl))
        try:
            target = self.interval
            while True:
                target = min(target, self.duration)
                await self._sleep_until(target)
                self.take_sample("run")
                self._check_live()
                if self.run_id in ctrl.ended:
                    self.problems.append(f"the run ended before the soak did, at t={self.samples[-1]['t']:.0f} s: "
                                         f"{ctrl.ended[self.run_id]['event']} {ctrl.ended[self.run_id]['data']}")
                    break
                if any(p.closed for p in (ctrl, *self.observers)):
                    break
                if target >= self.duration:
                    break
                target += self.interval
        finally:
            commands.cancel()
            try:
                await commands
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self._finish_run()

    async def _sleep_until(self, t: float) -> None:
        """Sleep until ``t`` s after the run started, waking early if the run ends or a client drops."""
        peers = (self.controller, *self.observers)
        while True:
            left = t - (time.monotonic() - self.run_t0)
            if left <= 0 or self.run_id in self.controller.ended or any(p.closed for p in peers):
                return
            self.controller.changed.clear()
            try:
                await asyncio.wait_for(self.controller.changed.wait(), min(left, 1.0))
            except (asyncio.TimeoutError, TimeoutError):
                pass

    def _check_live(self) -> None:
        """A client the server disconnected is a problem (said once per client)."""
        for p in (self.controller, *self.observers):
            if p.closed and f"disconnected: {p.name}" not in self.notes:
                self.notes.append(f"disconnected: {p.name}")
                self.problems.append(f"{p.name} was disconnected by the server at "
                                     f"t={p.closed['at'] - self.started_wall():.0f} s: close code "
                                     f"{p.closed['code']} {p.closed['reason']!r}; goodbye {p.goodbye}")

    def started_wall(self) -> float:
        """The wall-clock time the run was accepted (now, before that)."""
        return time.time() - (time.monotonic() - self.run_t0) if self.run_t0 is not None else time.time()

    async def _wait(self, done, timeout: float, problem: str) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                self.problems.append(problem)
                return False
            self.controller.changed.clear()
            try:
                await asyncio.wait_for(self.controller.changed.wait(), min(left, 0.2))
            except (asyncio.TimeoutError, TimeoutError):
                pass
        return True

    async def _finish_run(self) -> None:
        ctrl, run_id = self.controller, self.run_id
        self.status = "stopping"
        if run_id not in ctrl.ended and not ctrl.closed:
            stop_sent = time.time()
            try:
                reply, rtt = await ctrl.request("stop", timeout=60)
            except (asyncio.TimeoutError, TimeoutError, ConnectionError) as exc:
                reply, rtt = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, None
            self.run_info["stop"] = {"sent": stop_sent, "rtt_ms": r3(rtt * 1000) if rtt is not None else None,
                                     "reply": reply}
            if not reply.get("ok") and run_id not in ctrl.ended:
                self.problems.append(f"stop failed: {reply.get('error')}")
        rows_so_far = max([p.rows for p in self.observers] + [ctrl.rows])
        save_timeout = 120 + rows_so_far / 2000  # the experiment writes its CSV before the run ends
        stop_asked = time.monotonic()
        await self._wait(lambda: run_id in ctrl.ended or ctrl.closed is not None, save_timeout,
                         f"no run_finished within {save_timeout:.0f} s of the stop")
        end = ctrl.ended.get(run_id)
        if end is not None:
            self.run_info["end_event"] = end["event"]
            self.run_info["end"] = {k: v for k, v in end["data"].items() if k != "traceback"}
            self.run_info["stop_to_end_s"] = round(time.monotonic() - stop_asked, 3)
            if end["event"] == "run_failed":
                self.problems.append(f"the run failed: {end['data'].get('error')}\n{end['data'].get('traceback')}")
        for p in self.observers:
            await self._wait(lambda p=p: run_id in p.ended or p.closed is not None, 60,
                             f"{p.name} did not receive the run's end within 60 s")
        self.status = "run ended"
        await asyncio.sleep(3)  # the worker collects garbage between runs
        self.take_sample("after")


    # --- after the server has stopped ---------------------------------------------------------
    def check_after_stop(self) -> None:
        """Read the server's log, and for a started run the rows, journal and CSV, into ``checks``."""
        if self.server is not None:
            self.checks["server_log"] = checks.server_log(
                self.server.err_path.read_text(errors="replace") if self.server.err_path.exists() else "")
        if self.run_id is not None and self.data is not None:
            self.checks["rows"] = checks.rows_check(self.run_id, self.controller, self.observers, self.args.rate,
                                                    self.seconds)
            self.checks["journal"] = checks.check_journal(self.data / "journal.sqlite", self.run_id)
            self.checks["csv"] = checks.check_csv(self.run_folder())

    def evaluate(self, interrupted: bool) -> None:
        """Add the problems the checks and the peers' counts show to ``problems``."""
        peers = self.observers + ([self.controller] if self.controller else [])
        self.problems.extend(checks.find_problems(peers, self.checks, self.run_id, interrupted, self.args.rate,
                                                  self.load))

    def run_folder(self) -> Path:
        """Where the run's data went: as run_started said, else DATA/runs/RUN_ID."""
        data_dir = ((self.controller.started.get(self.run_id) or {}).get("data") or {}).get("data_dir") \
            if self.controller else None
        return Path(data_dir) if data_dir else self.data / "runs" / str(self.run_id)

    def memory_summary(self) -> dict[str, Any]:
        """Memory slopes against the growth the design explains (see :mod:`.memory`)."""
        peer = self.observers[0] if self.observers else self.controller
        expected = memory.expected_growth(peer, self.args.rate, self.replay_size, self.calibration, self.duration)
        return memory.memory_summary(self.samples, self.warmup, expected)
