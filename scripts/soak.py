#!/usr/bin/env python
"""Soak test: run the real server for N minutes at a steady event rate and watch memory.

Not part of CI. Starts ``liaison serve`` as its own process (which starts the
session worker, and Xvfb when there is no display), writes a Builder-style
experiment into a temporary ROOT that adds ``--rate`` data rows per second,
connects ``--clients`` observers (each checks that the rows it receives are
contiguous: nothing lost, nothing repeated) and one controller that starts the
run and sends ~10 cheap commands a second (ping, state, get_exp_info),
timing their round trips.

Every ``--interval`` seconds it prints one line: VmRSS of the server and of the
worker, the journal's size (journal.sqlite + -wal), rows delivered per client,
command round-trip p50/p99 and delivery lag in that window. At the end: memory
after the warm-up vs at the end and the least-squares slope in MB/minute per
process, next to the growth the design accounts for (the server's replay
buffer, bounded; every row the experiment's ExperimentHandler keeps for its
CSV, measured per row before the soak), rows lost/duplicated, rows received vs
expected (and vs run_finished, the journal and the CSV), the server's warnings
and whether it exited cleanly and left no process behind. Everything goes to
``--out`` as JSON.

  .venv/bin/python scripts/soak.py [--minutes 10] [--rate 1000] [--clients 10] [--out artifacts/soak.json]
  .venv/bin/python scripts/soak.py --minutes 0.75          # smoke run

Exit status: 0 no problem found, 1 problems found (listed at the end), 2 the
soak could not be set up, 130 interrupted. The server and its children are
stopped in every case (SIGTERM, then SIGKILL of its process group after 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import csv
import itertools
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from benchlib.stats import quantile  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

KEY = "soak_rows"
COMMANDS = ("ping", "state", "get_exp_info")
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPLAY_ENTRY_OVERHEAD = 150  # bytes per replay-buffer entry besides its text: tuple, int, str header
SERVER_STOP_TIMEOUT = 60.0

EXPERIMENT = '''\
"""Soak experiment written by scripts/soak.py: `rate` data rows per second for `seconds` s.

Every TICK it adds the rows due by then (paced on time.perf_counter, so the
average rate holds even when a tick comes late), publishes them with
thisSession.sendExperimentData() and reads thisExp.status (where remote
commands land); it flips the window every FLIP_EVERY ticks.
"""
import os
import time

from psychopy import data
from psychopy.constants import FINISHED, PAUSED, STARTED

expName = "soak_rows"
expInfo = {
    "participant": "soak",
    "session": "001",
    "seconds": 60,
    "rate": 1000,
    "date|hid": "",
    "expName|hid": expName,
}
TICK = 0.010
FLIP_EVERY = 10


def setupData(expInfo, dataDir=None):
    dataDir = dataDir or os.path.dirname(os.path.abspath(__file__))
    name = f"{expInfo['participant']}_{expName}_{expInfo['date']}"
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
        dataFileName=os.path.join(dataDir, name),
    )


def setupWindow(expInfo=None, win=None):
    win.color = "black"
    return win


def add_row(thisExp, n, elapsed):
    thisExp.addData("row", n)
    thisExp.addData("elapsed", elapsed)
    thisExp.addData("value", (n % 1000) * 0.001)
    thisExp.addData("phase", "soak")
    thisExp.nextEntry()


def endExperiment(thisExp, win=None):
    if win is not None:
        win.flip()
    thisExp.status = FINISHED


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    seconds = float(expInfo["seconds"])
    rate = float(expInfo["rate"])
    start = time.perf_counter()
    paused_for = 0.0
    done = 0
    ticks = 0
    next_tick = start
    while True:
        status = thisExp.status
        if status == FINISHED:
            break
        if status == PAUSED:
            paused_at = time.perf_counter()
            while thisExp.status == PAUSED:
                time.sleep(0.001)
            paused_for += time.perf_counter() - paused_at
            next_tick = time.perf_counter()
            continue
        elapsed = time.perf_counter() - start - paused_for
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) - done
        for _ in range(due):
            add_row(thisExp, done, elapsed)
            done += 1
        if thisSession is not None:
            thisSession.sendExperimentData()
        ticks += 1
        if ticks % FLIP_EVERY == 0:
            win.flip()
        next_tick += TICK
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -10 * TICK:  # far behind (CPU contention): resynchronise, rows catch up by elapsed
            next_tick = time.perf_counter()
    if thisSession is not None:
        thisSession.sendExperimentData()
    endExperiment(thisExp, win=win)
'''

# Bytes an ExperimentHandler keeps per row of the soak experiment (its data for the CSV).
CALIBRATE = r'''
import importlib.util, json, sys, time, tracemalloc
from psychopy import data
spec = importlib.util.spec_from_file_location("soak_rows_calibration", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
info = json.loads(sys.argv[3])
info["date"] = data.getDateStr()
info["expName"] = module.expName
exp = data.ExperimentHandler(name="calibration", extraInfo=info, savePickle=False, saveWideText=False)
n = int(sys.argv[2])
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
t0 = time.perf_counter()
for i in range(n):
    module.add_row(exp, i, time.perf_counter() - t0)
after = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
exp.abort()
print("CALIBRATION " + json.dumps({"rows": n, "bytes_per_row": (after - before) / n}), flush=True)
'''


class SoakError(RuntimeError):
    """The soak could not be set up or carried on (not a finding about the server)."""


# --- /proc ------------------------------------------------------------------------------------

def proc_stat(pid: int) -> dict[str, int] | None:
    """ppid, pgid and CPU ticks (user + system) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return {"state": fields[0], "ppid": int(fields[1]), "pgid": int(fields[2]),
            "cpu_ticks": int(fields[11]) + int(fields[12])}


def proc_memory(pid: int) -> dict[str, float] | None:
    """VmRSS, RssAnon, VmHWM (MB) and thread count of ``pid``."""
    wanted = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "VmHWM": "hwm_mb", "Threads": "threads"}
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in wanted:
                    parts = value.split()
                    out[wanted[name]] = int(parts[0]) / 1024 if name != "Threads" else int(parts[0])
    except OSError:
        return None
    return out or None


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def proc_children(pid: int) -> list[int]:
    """Children of ``pid``: /proc/PID/task/*/children, else a scan of /proc/*/stat."""
    found: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            try:
                found.update(int(p) for p in (task / "children").read_text().split())
            except OSError:
                pass
        if found:
            return sorted(found)
    except OSError:
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat["ppid"] == pid:
                found.add(int(entry.name))
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (the server's own group: it and its descendants)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat["pgid"] == pgid and stat["state"] != "Z":
                members.append(int(entry.name))
    return sorted(members)


# --- statistics -------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (benchlib.stats.quantile)."""
    return quantile(values, q)


def summary_ms(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": r3(pct(values, 0.5)), "p99": r3(pct(values, 0.99)),
            "max": r3(max(values) if values else None)}


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def fmt(value: float | None, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


# --- the server process -----------------------------------------------------------------------

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
        return self.proc.poll() is None

    def wait_url(self, timeout: float) -> str:
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
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        err = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return (out[-chars // 3:] + err[-chars:]).strip()

    def worker_pid(self) -> int | None:
        for pid in proc_children(self.pid):
            if "session.worker" in proc_cmdline(pid):
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


# --- clients ----------------------------------------------------------------------------------

class Peer:
    """One WebSocket client speaking the protocol directly; counts and checks what it receives."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.last_seq: int | None = None
        self.seq_gaps = 0  # events missing from the seq numbering
        self.seq_repeats = 0
        self.events = 0
        self.frames = 0
        self.bytes = 0
        self.data_events = 0
        self.data_bytes = 0  # approximate: frame bytes shared out among a batch's events
        self.rows = 0  # rows received (duplicates included)
        self.lost = 0
        self.duplicated = 0
        self.bad_rows = 0  # events whose "row" values do not match first_row
        self.next_row: dict[str, int] = {}  # run id -> next expected first_row
        self.lags: list[float] = []  # seconds from publication in the worker to receipt, this window
        self.data_first_at: float | None = None  # receipt times of the first and last data_rows event
        self.data_last_at: float | None = None
        self.started: dict[str, dict] = {}
        self.stopping: dict[str, dict] = {}
        self.ended: dict[str, dict] = {}
        self.gap_messages: list[dict] = []
        self.goodbye: dict | None = None
        self.closed: dict | None = None
        self.changed = asyncio.Event()
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)

    async def connect(self, url: str, token: str) -> None:
        self.ws = await connect(url, max_size=None, compression=None, open_timeout=30)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if hello.get("type") != "hello":
            raise SoakError(f"{self.name}: expected hello, got {hello.get('type')}")
        await self.ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": self.role,
                                       "since": None, "client": self.name}))
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if welcome.get("type") != "welcome":
            raise SoakError(f"{self.name}: authentication failed: {welcome}")
        self.last_seq = welcome["last_seq"]
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for raw in ws:
                now = time.time()
                self.frames += 1
                self.bytes += len(raw)
                message = json.loads(raw)
                items = message if isinstance(message, list) else (message,)
                share = len(raw) / max(1, len(items))
                for item in items:
                    kind = item.get("type")
                    if kind == "event":
                        self._on_event(item, now, share)
                    elif kind == "reply":
                        future = self._pending.pop(item.get("id"), None)
                        if future is not None and not future.done():
                            future.set_result(item)
                    elif kind == "gap":
                        self.gap_messages.append(item)
                    elif kind == "goodbye":
                        self.goodbye = item
        except ConnectionClosed:
            pass
        finally:
            self.closed = {"code": ws.close_code, "reason": ws.close_reason, "at": time.time()}
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: connection closed"))
            self._pending.clear()
            self.changed.set()

    def _on_event(self, item: dict, now: float, size: float) -> None:
        seq = item["seq"]
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.seq_repeats += 1
                return
            self.seq_gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self.events += 1
        event, data = item["event"], item.get("data") or {}
        run_id = data.get("run_id")
        if event == "data_rows":
            rows = data["rows"]
            first, n = data["first_row"], len(rows)
            expected = self.next_row.get(run_id, 0)
            if first > expected:
                self.lost += first - expected
            elif first < expected:
                self.duplicated += min(expected, first + n) - first
            self.next_row[run_id] = max(expected, first + n)
            self.rows += n
            self.data_events += 1
            self.data_bytes += size
            if self.data_first_at is None:
                self.data_first_at = now
            self.data_last_at = now
            if n and (rows[0].get("row") != first or rows[-1].get("row") != first + n - 1):
                self.bad_rows += 1
            self.lags.append(now - item["time"])
        elif event == "run_started":
            self.started[run_id] = item
        elif event == "run_stopping":
            self.stopping[run_id] = item
        elif event in ("run_finished", "run_failed"):
            self.ended[run_id] = item
            self.changed.set()

    async def request(self, cmd: str, args: dict | None = None, timeout: float = 30.0) -> tuple[dict, float]:
        """Send a command; its reply and round trip in seconds."""
        if self.closed is not None:
            raise ConnectionError(f"{self.name}: connection closed")
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        started = time.perf_counter()
        await self.ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd,
                                       "args": args or {}}))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        return reply, time.perf_counter() - started

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:  # noqa: BLE001
                pass
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def unique_rows(self, run_id: str | None) -> int:
        return self.next_row.get(run_id, 0) - self.lost if run_id else 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "rows": self.rows, "lost": self.lost,
                "duplicated": self.duplicated, "bad_rows": self.bad_rows, "events": self.events,
                "data_events": self.data_events, "frames": self.frames, "bytes": self.bytes,
                "seq_gaps": self.seq_gaps, "seq_repeats": self.seq_repeats, "gap_messages": self.gap_messages,
                "goodbye": self.goodbye, "closed": self.closed}


# --- the soak ---------------------------------------------------------------------------------

class Soak:
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
        self.url: str | None = None
        self.observers: list[Peer] = []
        self.controller: Peer | None = None
        self.run_id: str | None = None
        self.run_info: dict[str, Any] = {}
        self.samples: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.calibration: dict[str, Any] | None = None
        self.replay_size: int | None = None
        self.rtt_window: dict[str, list[float]] = {cmd: [] for cmd in COMMANDS}
        self.rtt_all: dict[str, list[float]] = {cmd: [] for cmd in COMMANDS}
        self.command_errors: list[str] = []
        self.command_timeouts = 0
        self.commands_sent = 0
        self.run_t0: float | None = None  # monotonic time the run was accepted
        self.worker_pids: list[int] = []
        self._cpu_prev: dict[str, tuple[float, int]] = {}
        self.checks: dict[str, Any] = {}
        self.status = "not started"
        self.started_at = time.time()
        self.loadavg_start = os.getloadavg()

    # --- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="liaison-soak-"))
        self.root = self.tmp / "root"
        self.data = self.tmp / "data"
        self.root.mkdir()
        (self.root / f"{KEY}.py").write_text(EXPERIMENT, encoding="utf-8")
        try:
            from liaison.server.config import ServerConfig

            self.replay_size = ServerConfig.__dataclass_fields__["replay_size"].default
        except Exception:  # noqa: BLE001 - only used to explain growth
            self.replay_size = None
        self.calibrate()

    def calibrate(self) -> None:
        """Measure, in a separate process, how many bytes PsychoPy's ExperimentHandler keeps per row."""
        rows = 20_000
        info = {"participant": "soak", "session": "001", "seconds": self.seconds, "rate": self.rate_value}
        try:
            done = subprocess.run([sys.executable, "-c", CALIBRATE, str(self.root / f"{KEY}.py"), str(rows),
                                   json.dumps(info)], capture_output=True, text=True, timeout=180,
                                  cwd=self.tmp, stdin=subprocess.DEVNULL)
            line = next((text for text in done.stdout.splitlines() if text.startswith("CALIBRATION ")), None)
            if line is None:
                raise RuntimeError((done.stderr or done.stdout)[-500:])
            self.calibration = json.loads(line.split(" ", 1)[1])
        except Exception as exc:  # noqa: BLE001 - the soak still runs; the slope just lacks context
            self.notes.append(f"row-size calibration failed: {exc}")

    @property
    def seconds(self) -> float:
        """How long the experiment may run: longer than the soak, which stops it."""
        return math.ceil(self.duration + 600)

    @property
    def rate_value(self) -> float | int:
        rate = self.args.rate
        return int(rate) if float(rate).is_integer() else rate

    def start_server(self) -> None:
        liaison = Path(sys.executable).parent / "liaison"
        if not liaison.exists():
            liaison = REPO / ".venv" / "bin" / "liaison"
        command = [str(liaison), "serve", str(self.root), "--port", "0", "--token", self.token,
                   "--data-dir", str(self.data), "--window-size", "320x240", "--frame-rate", "60",
                   "--log-level", "warning"]
        self.server = ServerProcess(command, cwd=self.tmp, log_dir=self.tmp)
        atexit.register(self.server.emergency_kill)
        self.url = self.server.wait_url(timeout=240)
        deadline = time.monotonic() + 30
        while (pid := self.server.worker_pid()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is None:
            raise SoakError("the server serves but no session worker process was found among its children")
        self.worker_pids.append(pid)

    # --- sampling -------------------------------------------------------------------------
    def _cpu_percent(self, label: str, pid: int | None) -> float | None:
        stat = proc_stat(pid) if pid else None
        if stat is None:
            return None
        now = time.monotonic()
        previous = self._cpu_prev.get(f"{label}:{pid}")
        self._cpu_prev[f"{label}:{pid}"] = (now, stat["cpu_ticks"])
        if previous is None or now <= previous[0]:
            return None
        return round((stat["cpu_ticks"] - previous[1]) / CLK_TCK / (now - previous[0]) * 100, 1)

    def journal_bytes(self) -> int:
        total = 0
        for name in ("journal.sqlite", "journal.sqlite-wal"):
            try:
                total += (self.data / name).stat().st_size
            except OSError:
                pass
        return total

    def take_sample(self, phase: str) -> dict[str, Any]:
        t = time.monotonic() - self.run_t0 if self.run_t0 is not None else 0.0
        worker = self.server.worker_pid()
        if worker is not None and worker not in self.worker_pids:
            self.worker_pids.append(worker)
            self.problems.append(f"the session worker was replaced (pid {self.worker_pids[-2]} -> {worker}) "
                                 f"at t={t:.0f} s: it died or was killed")
        xvfb = next((p for p in (proc_children(worker) if worker else []) if "Xvfb" in " ".join(proc_cmdline(p))),
                    None)
        procs = {"server": self.server.pid, "worker": worker, "xvfb": xvfb, "soak": os.getpid()}
        memory = {}
        for label, pid in procs.items():
            info = proc_memory(pid) if pid else None
            if info is not None:
                info = {k: round(v, 2) if isinstance(v, float) else v for k, v in info.items()}
                info["pid"] = pid
                info["cpu_percent"] = self._cpu_percent(label, pid)
            memory[label] = info
        previous = next((s for s in reversed(self.samples) if s["phase"] != "idle"), None)
        rows = [p.rows for p in self.observers]
        lags = [lag for p in self.observers for lag in p.lags]
        for p in (*self.observers, self.controller):
            p.lags = []
        rtt = {cmd: summary_ms([v * 1000 for v in values]) for cmd, values in self.rtt_window.items()}
        every = [v * 1000 for values in self.rtt_window.values() for v in values]
        self.rtt_window = {cmd: [] for cmd in COMMANDS}
        sample = {
            "phase": phase, "t": round(t, 3), "wall": round(time.time(), 3), "memory": memory,
            "journal_bytes": self.journal_bytes(), "rows_per_client": rows,
            "controller_rows": self.controller.rows if self.controller else None,
            "rtt_ms": {"all": summary_ms(every), **rtt},
            "lag_ms": summary_ms([v * 1000 for v in lags]),
            "loadavg": os.getloadavg(),
        }
        if phase == "run" and previous is not None and t > previous["t"] and rows and previous["rows_per_client"]:
            sample["rows_per_second"] = round((min(rows) - min(previous["rows_per_client"])) / (t - previous["t"]), 1)
        self.samples.append(sample)
        self.print_sample(sample)
        return sample

    def print_sample(self, s: dict[str, Any]) -> None:
        mem = s["memory"]
        first = next((x for x in self.samples if x["phase"] == "run"), None)

        def rss(label: str) -> str:
            info = mem.get(label)
            if not info:
                return f"{label} {'gone':>8}"
            text = f"{label} {info['rss_mb']:6.1f} MB"
            base = (first or {}).get("memory", {}).get(label) if first is not None and first is not s else None
            if base:
                text += f" ({info['rss_mb'] - base['rss_mb']:+6.1f})"
            return text

        rows = s["rows_per_client"]
        lost = sum(p.lost for p in self.observers)
        dup = sum(p.duplicated for p in self.observers)
        rows_text = (f"rows/client {min(rows)}" + (f"-{max(rows)}" if max(rows) != min(rows) else "")
                     if rows else f"rows {s['controller_rows']}")
        if "rows_per_second" in s:
            rows_text += f" ({s['rows_per_second']:.0f}/s)"
        rtt, lag = s["rtt_ms"]["all"], s["lag_ms"]
        cpu = "/".join(fmt((mem.get(k) or {}).get("cpu_percent"), ".0f") for k in ("server", "worker"))
        label = {"idle": "idle", "run": f"{s['t']:5.0f}s", "after": "after"}[s["phase"]]
        print(f"[{label:>6}] {rss('server')}  {rss('worker')}  journal {s['journal_bytes'] / MB:6.1f} MB | "
              f"{rows_text} lost {lost} dup {dup} | cmd rtt p50 {fmt(rtt['p50'])} p99 {fmt(rtt['p99'])} ms "
              f"(n={rtt['n']}) | lag p50 {fmt(lag['p50'])} p99 {fmt(lag['p99'])} ms | cpu srv/wrk {cpu}%",
              flush=True)

    # --- the run --------------------------------------------------------------------------
    async def drive(self) -> None:
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
              f"{len(self.observers)} observers, 1 controller ({self.args.cmd_rate:g} commands/s), "
              f"sample every {self.interval:g} s, warm-up {self.warmup:g} s", flush=True)
        await self._wait(lambda: self.run_id in ctrl.started or self.run_id in ctrl.ended, 60,
                         "no run_started event within 60 s")
        self.take_sample("run")
        commands = asyncio.get_running_loop().create_task(self._command_loop())
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
        for p in (self.controller, *self.observers):
            if p.closed and f"disconnected: {p.name}" not in self.notes:
                self.notes.append(f"disconnected: {p.name}")
                self.problems.append(f"{p.name} was disconnected by the server at "
                                     f"t={p.closed['at'] - self.started_wall():.0f} s: close code "
                                     f"{p.closed['code']} {p.closed['reason']!r}; goodbye {p.goodbye}")

    def started_wall(self) -> float:
        return time.time() - (time.monotonic() - self.run_t0) if self.run_t0 is not None else time.time()

    async def _command_loop(self) -> None:
        ctrl = self.controller
        period = 1.0 / self.args.cmd_rate
        next_at = time.monotonic()
        for i in itertools.count():
            cmd = COMMANDS[i % len(COMMANDS)]
            self.commands_sent += 1
            try:
                reply, rtt = await ctrl.request(cmd, timeout=30)
                if reply.get("ok"):
                    self.rtt_window[cmd].append(rtt)
                    self.rtt_all[cmd].append(rtt)
                else:
                    self.command_errors.append(f"{cmd}: {reply.get('error')}")
            except (asyncio.TimeoutError, TimeoutError):
                self.command_timeouts += 1
            except ConnectionError as exc:
                self.command_errors.append(f"{cmd}: {exc}")
                return
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -1.0:  # a slow reply: keep the pace from now on instead of bursting
                next_at = time.monotonic()
            await asyncio.sleep(max(0.0, delay))

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
    def check_journal(self) -> dict[str, Any]:
        path = self.data / "journal.sqlite"
        result: dict[str, Any] = {}
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as exc:
            return {"error": str(exc)}
        try:
            record = con.execute("SELECT status, outcome, rows FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
            result["run"] = dict(zip(("status", "outcome", "rows"), record)) if record else None
            expected = lost = duplicated = received = 0
            for (text,) in con.execute("SELECT text FROM events WHERE type = 'data_rows' AND run_id = ? "
                                       "ORDER BY seq", (self.run_id,)):
                data = json.loads(text)["data"]
                first, n = data["first_row"], len(data["rows"])
                if first > expected:
                    lost += first - expected
                elif first < expected:
                    duplicated += min(expected, first + n) - first
                expected = max(expected, first + n)
                received += n
            result.update(rows=expected - lost, lost=lost, duplicated=duplicated, received=received)
            result["events"] = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            result["commands"] = con.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
        except sqlite3.Error as exc:
            result["error"] = str(exc)
        finally:
            con.close()
        return result

    def check_csv(self) -> dict[str, Any]:
        data_dir = ((self.controller.started.get(self.run_id) or {}).get("data") or {}).get("data_dir") \
            if self.controller else None
        folder = Path(data_dir) if data_dir else self.data / "runs" / str(self.run_id)
        files = sorted(folder.glob("*.csv"))
        if not files:
            return {"error": f"no CSV in {folder}", "files": sorted(p.name for p in folder.glob("*"))}
        with open(files[0], newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            rows = sum(1 for _ in reader)
        return {"file": files[0].name, "rows": rows, "bytes": files[0].stat().st_size, "columns": header}

    def server_log(self) -> dict[str, Any]:
        text = self.server.err_path.read_text(errors="replace") if self.server else ""
        lines = [line for line in text.splitlines()
                 if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line)]
        return {"warning_lines": len(lines), "lines": lines[:50], "stderr_tail": text[-4000:]}

    # --- results ------------------------------------------------------------------------------
    def memory_summary(self) -> dict[str, Any]:
        run = [s for s in self.samples if s["phase"] == "run"]
        steady = [s for s in run if s["t"] >= self.warmup - 1e-6]
        out: dict[str, Any] = {}
        for label in ("server", "worker", "xvfb", "soak"):
            points = [(s["t"], s["memory"][label]["rss_mb"]) for s in steady if s["memory"].get(label)]
            anon = [(s["t"], s["memory"][label]["anon_mb"]) for s in steady
                    if s["memory"].get(label) and "anon_mb" in s["memory"][label]]
            idle = next((s["memory"].get(label) for s in self.samples if s["phase"] == "idle"), None)
            after = next((s["memory"].get(label) for s in self.samples if s["phase"] == "after"), None)
            out[label] = {
                "idle_mb": idle["rss_mb"] if idle else None,
                "start_t": points[0][0] if points else None,
                "start_mb": points[0][1] if points else None,
                "end_t": points[-1][0] if points else None,
                "end_mb": points[-1][1] if points else None,
                "delta_mb": r3(points[-1][1] - points[0][1]) if points else None,
                "slope_mb_per_min": r3(slope_per_minute(points)),
                "anon_slope_mb_per_min": r3(slope_per_minute(anon)),
                "after_run_mb": after["rss_mb"] if after else None,
                "samples": len(points),
            }
        journal = [(s["t"], s["journal_bytes"] / MB) for s in steady]
        out["journal"] = {"start_mb": r3(journal[0][1]) if journal else None,
                          "end_mb": r3(journal[-1][1]) if journal else None,
                          "slope_mb_per_min": r3(slope_per_minute(journal))}
        out["expected"] = self.expected_growth()
        for label in ("server", "worker"):
            points = [(s["t"], s["memory"][label]["rss_mb"]) for s in steady if s["memory"].get(label)]
            windows = {"": points}
            if len(points) >= 9:  # also the last third: a bounded buffer that filled shows as a flat tail
                windows["recent_"] = points[-max(3, len(points) // 3):]
            for prefix, window in windows.items():
                slope = slope_per_minute(window)
                design = self.design_curve(label, out["expected"])
                expected = slope_per_minute([(t, design(t)) for t, _ in window]) if design else None
                out[label][f"{prefix}slope_mb_per_min"] = r3(slope)
                out[label][f"{prefix}expected_slope_mb_per_min"] = r3(expected)
                out[label][f"{prefix}unexplained_slope_mb_per_min"] = (r3(slope - expected)
                                                                       if None not in (slope, expected) else None)
                if prefix:
                    out[label]["recent_from_t"] = window[0][0]
        return out

    @staticmethod
    def design_curve(label: str, expected: dict[str, Any]):
        """MB the design accounts for ``t`` s into the run (the replay buffer stops growing once full)."""
        info = expected.get(label) or {}
        per_second = info.get("mb_per_min") / 60 if info.get("mb_per_min") is not None else None
        if per_second is None:
            return None
        full_at = info["full_after_min"] * 60 if info.get("full_after_min") else math.inf
        return lambda t: per_second * min(t, full_at)

    def expected_growth(self) -> dict[str, Any]:
        """Growth the design accounts for, from what was measured, to read the slopes against."""
        peer = self.observers[0] if self.observers else self.controller
        rate = self.args.rate
        events_per_s = None
        per_event = None
        if peer is not None and peer.data_events > 1 and peer.data_last_at > peer.data_first_at:
            events_per_s = (peer.data_events - 1) / (peer.data_last_at - peer.data_first_at)
            per_event = peer.data_bytes / peer.data_events + REPLAY_ENTRY_OVERHEAD
        server = {"what": "the replay buffer keeps the last events' JSON text in memory "
                          f"(bounded: {self.replay_size} events), about {fmt(per_event, '.0f')} bytes per event",
                  "mb_per_min": None, "full_after_min": None}
        if events_per_s and per_event:
            server["mb_per_min"] = r3(events_per_s * per_event * 60 / MB)
            if self.replay_size:
                server["full_after_min"] = r3(self.replay_size / events_per_s / 60)
                server["cap_mb"] = r3(self.replay_size * per_event / MB)
                if server["full_after_min"] < self.duration / 60:
                    server["what"] += "; it fills during the soak, after which it stops growing"
        bytes_per_row = (self.calibration or {}).get("bytes_per_row")
        worker = {"what": "PsychoPy's ExperimentHandler keeps every row for the CSV "
                          f"(measured: {fmt(bytes_per_row, '.0f')} bytes per row)",
                  "mb_per_min": r3(rate * 60 * bytes_per_row / MB) if bytes_per_row else None}
        return {"server": server, "worker": worker, "events_per_second": r3(events_per_s)}

    def rows_check(self) -> dict[str, Any]:
        run_id = self.run_id
        ctrl = self.controller
        started = (ctrl.started.get(run_id) or {}) if ctrl else {}
        stopping = (ctrl.stopping.get(run_id) or {}) if ctrl else {}
        end = (ctrl.ended.get(run_id) or {}) if ctrl else {}
        result: dict[str, Any] = {"per_client": [p.unique_rows(run_id) for p in self.observers],
                                  "controller": ctrl.unique_rows(run_id) if ctrl else None,
                                  "run_finished": (end.get("data") or {}).get("rows")}
        if started.get("time") and stopping.get("time"):
            seconds = stopping["time"] - started["time"]
            result["expected"] = int(self.args.rate * seconds)
            result["expected_basis"] = f"{self.args.rate:g} rows/s x {seconds:.3f} s (run_started -> run_stopping)"
        elif started.get("time") and end.get("data", {}).get("outcome") == "completed":
            result["expected"] = int(self.args.rate * self.seconds)
            result["expected_basis"] = f"{self.args.rate:g} rows/s x {self.seconds} s (the run completed)"
        return result

    def evaluate(self) -> None:
        """Turn the measurements into a list of problems (findings about the server)."""
        for p in self.observers + ([self.controller] if self.controller else []):
            if p.lost or p.duplicated:
                self.problems.append(f"{p.name}: {p.lost} rows lost, {p.duplicated} duplicated")
            if p.bad_rows:
                self.problems.append(f"{p.name}: {p.bad_rows} data_rows events whose rows do not match first_row")
            if p.seq_gaps or p.seq_repeats or p.gap_messages:
                self.problems.append(f"{p.name}: {p.seq_gaps} events missing and {p.seq_repeats} repeated in the "
                                     f"seq numbering; gap messages {p.gap_messages}")
        rows = self.checks.get("rows", {})
        finished = rows.get("run_finished")
        counts = {f"client {i}": n for i, n in enumerate(rows.get("per_client", []))}
        if rows.get("controller") is not None:
            counts["controller"] = rows["controller"]
        if self.checks.get("journal", {}).get("rows") is not None:
            counts["journal"] = self.checks["journal"]["rows"]
        if self.checks.get("csv", {}).get("rows") is not None:
            counts["csv"] = self.checks["csv"]["rows"]
        if finished is not None:
            differ = {k: v for k, v in counts.items() if v != finished}
            if differ:
                self.problems.append(f"run_finished says {finished} rows but: {differ}")
        elif self.run_id is not None and not self.status.startswith("interrupted"):
            self.problems.append("the run's end (run_finished) was never received, so its row count is unknown")
        expected = rows.get("expected")
        if expected and finished is not None:
            deviation = (finished - expected) / expected
            rows["deviation"] = r3(deviation)
            if abs(deviation) > 0.01 + self.args.rate * 0.05 / expected:
                self.problems.append(f"{finished} rows produced, {expected} expected ({deviation:+.1%}): the "
                                     "experiment did not keep its pace")
        journal = self.checks.get("journal", {})
        if journal.get("error"):
            self.problems.append(f"journal check failed: {journal['error']}")
        elif journal.get("lost") or journal.get("duplicated"):
            self.problems.append(f"journal: {journal['lost']} rows missing, {journal['duplicated']} duplicated")
        if self.checks.get("csv", {}).get("error") and self.run_id is not None:
            self.problems.append(f"CSV check: {self.checks['csv']['error']}")
        if self.command_errors:
            self.problems.append(f"{len(self.command_errors)} commands failed, e.g. {self.command_errors[:3]}")
        if self.command_timeouts:
            self.problems.append(f"{self.command_timeouts} commands got no reply within 30 s")
        exit_info = self.checks.get("server_exit", {})
        if exit_info.get("killed"):
            self.problems.append(f"the server did not exit within {SERVER_STOP_TIMEOUT:.0f} s of SIGTERM and "
                                 "was killed")
        elif exit_info and exit_info.get("code") not in (0, None):
            self.problems.append(f"the server exited with code {exit_info.get('code')} after SIGTERM")
        if exit_info.get("left_behind"):
            self.problems.append(f"processes left behind after the server exited: {exit_info['left_behind']}")
        log_info = self.checks.get("server_log", {})
        if log_info.get("warning_lines"):
            self.problems.append(f"the server logged {log_info['warning_lines']} warnings/errors, e.g. "
                                 f"{log_info['lines'][:3]}")

    def report(self, out: Path) -> dict[str, Any]:
        memory = self.memory_summary() if self.samples else {}
        per_cmd = {cmd: summary_ms([v * 1000 for v in values]) for cmd, values in self.rtt_all.items()}
        result = {
            "status": self.status,
            "config": {"minutes": self.args.minutes, "rate": self.args.rate, "clients": self.args.clients,
                       "cmd_rate": self.args.cmd_rate, "interval_s": self.interval, "warmup_s": self.warmup,
                       "server_command": self.server.command if self.server else None,
                       "experiment_seconds": self.seconds},
            "environment": {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "loadavg_start": self.loadavg_start,
                            "loadavg_end": os.getloadavg(), "git": git_head(),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started_at))},
            "temp_dir": str(self.tmp) if self.tmp else None,
            "calibration": self.calibration,
            "run": self.run_info,
            "memory": memory,
            "rows": self.checks.get("rows"),
            "journal": self.checks.get("journal"),
            "csv": self.checks.get("csv"),
            "commands": {"sent": self.commands_sent, "errors": self.command_errors[:50],
                         "timeouts": self.command_timeouts, "rtt_ms": per_cmd},
            "clients": [p.describe() for p in self.observers],
            "controller": self.controller.describe() if self.controller else None,
            "worker_pids": self.worker_pids,
            "server_exit": self.checks.get("server_exit"),
            "server_log": self.checks.get("server_log"),
            "samples": self.samples,
            "notes": self.notes,
            "problems": self.problems,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        self.print_summary(result, out)
        return result

    def print_summary(self, r: dict[str, Any], out: Path) -> None:
        print()
        print(f"== soak summary: {self.args.minutes:g} min at {self.args.rate:g} rows/s, {self.args.clients} "
              f"observers, status: {self.status} ==")
        memory = r["memory"]
        if memory:
            print(f"memory (VmRSS, MB)  idle    start@{fmt(memory['server']['start_t'], '.0f')}s     end   delta"
                  "   slope MB/min   by design MB/min   unexplained   after run")
            for label in ("server", "worker"):
                m = memory[label]
                expected = m.get("expected_slope_mb_per_min")
                print(f"  {label:<16} {fmt(m['idle_mb']):>6} {fmt(m['start_mb']):>12} {fmt(m['end_mb']):>7} "
                      f"{fmt(m['delta_mb'], '+.1f'):>7} {fmt(m['slope_mb_per_min'], '+.2f'):>14} "
                      f"{fmt(expected, '+.2f'):>18} {fmt(m['unexplained_slope_mb_per_min'], '+.2f'):>13} "
                      f"{fmt(m['after_run_mb']):>11}")
            if "recent_slope_mb_per_min" in memory["server"]:
                print(f"  last {(memory['server']['end_t'] - memory['server']['recent_from_t']) / 60:.1f} min: "
                      + "; ".join(f"{label} {fmt(memory[label].get('recent_slope_mb_per_min'), '+.2f')} MB/min "
                                  f"(by design {fmt(memory[label].get('recent_expected_slope_mb_per_min'), '+.2f')}, "
                                  f"unexplained {fmt(memory[label].get('recent_unexplained_slope_mb_per_min'), '+.2f')})"
                                  for label in ("server", "worker") if "recent_slope_mb_per_min" in memory[label]))
            replay = memory["expected"]["server"]
            print(f"  by design: server: {replay['what']}"
                  + (f" (full after ~{replay['full_after_min']:.1f} min, at ~{replay['cap_mb']:.0f} MB)"
                     if replay.get("full_after_min") else ""))
            print(f"             worker: {memory['expected']['worker']['what']}")
            print(f"  journal: {fmt(memory['journal']['end_mb'])} MB at the end, "
                  f"{fmt(memory['journal']['slope_mb_per_min'], '+.2f')} MB/min")
        rows = r.get("rows") or {}
        if rows:
            per_client = rows.get("per_client") or []
            clients_text = (f"{per_client[0]} per client (all {len(per_client)} equal)"
                            if per_client and len(set(per_client)) == 1 else f"per client {per_client}")
            print(f"rows: expected {rows.get('expected')} [{rows.get('expected_basis')}], run_finished "
                  f"{rows.get('run_finished')}, {clients_text}, journal {(r.get('journal') or {}).get('rows')}, "
                  f"csv {(r.get('csv') or {}).get('rows')}")
        lost = sum(p.lost for p in self.observers)
        dup = sum(p.duplicated for p in self.observers)
        seq = sum(p.seq_gaps + p.seq_repeats for p in self.observers)
        print(f"rows lost {lost}, duplicated {dup} (all clients); seq anomalies {seq}; disconnects "
              f"{sum(1 for p in self.observers if p.closed and p.closed.get('code') not in (1000, None))}")
        cmds = r["commands"]
        print(f"commands: {cmds['sent']} sent, {len(self.command_errors)} errors, {cmds['timeouts']} timeouts; "
              + ", ".join(f"{c} p50 {fmt(v['p50'], '.2f')} p99 {fmt(v['p99'], '.2f')} max {fmt(v['max'], '.1f')} ms"
                          for c, v in cmds["rtt_ms"].items()))
        if "stop_to_end_s" in self.run_info:
            print(f"run: {self.run_info.get('end_event')} {self.run_info['end'].get('outcome', '')}, "
                  f"{self.run_info['stop_to_end_s']:.1f} s from stop to run_finished (includes writing the CSV)")
        ex = r.get("server_exit") or {}
        if ex:
            print(f"server: exit code {ex.get('code')} {ex.get('seconds')} s after SIGTERM"
                  f"{' (killed)' if ex.get('killed') else ''}; left behind: {ex.get('left_behind') or 'nothing'}; "
                  f"log warnings/errors: {(r.get('server_log') or {}).get('warning_lines')}")
        for note in self.notes:
            print(f"note: {note}")
        if self.problems:
            print(f"PROBLEMS ({len(self.problems)}):")
            for problem in self.problems:
                print(f"  - {problem}")
        else:
            print("no problems found")
        print(f"report: {out}")


def git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="How long to soak (fractions allowed).")
    parser.add_argument("--rate", type=float, default=1000.0, help="Data rows per second the experiment adds.")
    parser.add_argument("--clients", type=int, default=10, help="Observer clients counting rows.")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "soak.json", help="JSON report.")
    parser.add_argument("--interval", type=float, default=10.0, help="Seconds between samples.")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="Seconds of run before memory counts (at most half the soak).")
    parser.add_argument("--cmd-rate", type=float, default=10.0, help="Controller commands per second.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary ROOT/DATA folder.")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.clients < 0 or args.interval <= 0 or args.cmd_rate <= 0:
        parser.error("--minutes, --rate, --interval and --cmd-rate must be > 0, --clients >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)  # outside the event loop; inside, drive() cancels itself
    signal.signal(signal.SIGHUP, interrupted)
    code = 0
    try:
        soak.prepare()
        print(f"starting liaison serve in {soak.tmp} ...", flush=True)
        soak.start_server()
        print(f"server pid {soak.server.pid}, worker pid {soak.worker_pids[0]}, {soak.url}", flush=True)
        asyncio.run(soak.drive())
        soak.status = "completed" if soak.status == "run ended" else soak.status
    except (KeyboardInterrupt, asyncio.CancelledError):
        soak.status = f"interrupted ({soak.status})"
        code = 130
    except SoakError as exc:
        soak.status = f"set-up failed ({soak.status})"
        soak.notes.append(f"soak error: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        soak.status = f"crashed ({soak.status})"
        soak.notes.append(f"soak crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        traceback.print_exc()
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded (60 s + kill): let it finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if soak.server is not None:
            print(f"stopping the server (SIGTERM, up to {SERVER_STOP_TIMEOUT:.0f} s) ...", flush=True)
            soak.checks["server_exit"] = soak.server.stop()
            soak.checks["server_log"] = soak.server_log()
        if soak.run_id is not None and soak.data is not None:
            soak.checks["rows"] = soak.rows_check()
            soak.checks["journal"] = soak.check_journal()
            soak.checks["csv"] = soak.check_csv()
        if code in (0, 130):
            soak.evaluate()
        soak.report(args.out)
        if soak.tmp is not None:
            if args.keep or (soak.problems and code == 0):
                print(f"kept {soak.tmp} (server logs, journal, run folder)")
            else:
                shutil.rmtree(soak.tmp, ignore_errors=True)
    if code == 0 and soak.problems:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
