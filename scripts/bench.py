#!/usr/bin/env python
"""Side-by-side benchmark: our liaison server vs PsychoPy's liaison + Session vs a bare websockets floor.

One run measures, on this machine, with the same Builder-style experiments in
the same kind of window (Xvfb):

1. round trip of a cheap request (ours ``ping``, PsychoPy ``liaison.pingPong``, floor echo);
2. a command to the experiment's process / main thread (ours ``get_exp_info`` and,
   during a run, ``add_data``; PsychoPy ``SessionQueue.queueTask`` to the main thread);
3. pause latency: client sends pause -> the running experiment observes PAUSED;
4. fan-out of a real run's data rows to 1 and 10 clients (rate, loss, lag);
5. longest garbage-collection pause in the experiment's process during runs;
6. bytes sent to a client per trial as the run grows;
7. missed 240 Hz frame deadlines with the server idle vs 10 clients + 100 commands/s, worst lateness,
   and our run's own timing report (``session.timing``) with the priority it obtained.

Process layout: each server runs in its own process (ours: server process +
session worker process; PsychoPy: one process, its liaison on a thread and
the SessionQueue on the main thread; floor: one process); all clients run in
this process's event loop. The three start in parallel; round trips are
interleaved so they share machine conditions; then each stack's heavy
measures run alone (the idle PsychoPy host is SIGSTOPped during ours, ours is
shut down before PsychoPy's). Prints tables with ratios and goal verdicts and
writes ``artifacts/bench.json``. Usage:

  .venv/bin/python scripts/bench.py [--quick] [--out artifacts/bench.json]

Default ~2.5 min, ``--quick`` ~1 min, on 2 cores (plus up to 90 s / 20 s waiting for other
processes to leave the CPU: on a shared machine each measure records the CPU other processes
used meanwhile, and a disturbed measure is flagged in the tables).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import Any, Awaitable, Callable

PACED_RATE = 22_000  # rows/s for the paced fan-out: the goal's 20k/s with a margin for the run's ends

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from benchlib import measures as m  # noqa: E402
from benchlib import noise  # noqa: E402
from benchlib.experiments import write_root  # noqa: E402
from benchlib.hosts import Host  # noqa: E402
from benchlib.report import goals, machine_info, render  # noqa: E402

TOKEN = "bench-token-000000"
# The same window for both stacks (ours: WindowParams; PsychoPy: visual.Window kwargs). Xvfb renders
# in software: a 640x480 window with an FBO costs 1.5-3 ms per draw+flip here, which alone misses
# 240 Hz deadlines and drowns what the servers do to frame timing; 320x240 without FBO costs ~0.15 ms.
WINDOW_SIZE = [320, 240]
OURS_WINDOW = {"size": WINDOW_SIZE, "frame_rate": 240, "color": "grey", "units": "height", "use_fbo": False}
PSY_WINDOW = {"size": WINDOW_SIZE, "color": "grey", "units": "height", "winType": "pyglet", "useFBO": False,
              "allowStencil": True, "checkTiming": False}
STARTED = time.perf_counter()


@dataclass
class Settings:
    """Sample sizes; ``--quick`` trades precision for a ~1.5 min run."""

    quick: bool
    round_trips: int  # per round-trip measure (>= 1000)
    rounds: int
    psy_queued: int  # PsychoPy queueTask round trips (each ~100 ms: its queue polls at 10 Hz)
    pause_cycles: int
    main_thread_probes: int
    ours_rows: int  # rows_bench trials through our server (1 and 10 clients)
    psy_rows_1: int  # rows_bench trials through PsychoPy, 1 client (its cost per trial grows with the run)
    psy_rows_10: int
    frames: int  # paced 240 Hz frames per frame-timing run
    fanout_timeout: float
    stall: float
    spin_ms: float
    quiet_budget_s: float  # total time the bench may wait for other processes to leave the CPU
    quiet_per_step_s: float

    @classmethod
    def make(cls, quick: bool, **overrides: Any) -> "Settings":
        base = dict(quick=quick, round_trips=1000, rounds=5, psy_queued=30, pause_cycles=20,
                    main_thread_probes=50, ours_rows=10_000, psy_rows_1=1000, psy_rows_10=300, frames=1200,
                    fanout_timeout=30.0, stall=10.0, spin_ms=1.0, quiet_budget_s=20.0,
                    quiet_per_step_s=5.0) if quick else \
            dict(quick=quick, round_trips=2000, rounds=10, psy_queued=100, pause_cycles=50,
                 main_thread_probes=200, ours_rows=40_000, psy_rows_1=1000, psy_rows_10=500, frames=4800,
                 fanout_timeout=60.0, stall=15.0, spin_ms=1.0, quiet_budget_s=90.0, quiet_per_step_s=20.0)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- hosts ---------------------------------------------------------------------------------------

def start_hosts(base: Path, ours_priority: str = "high") -> dict[str, Host]:
    """Start the three servers at once (each needs seconds to import PsychoPy / open a window)."""
    ours_root, psy_root = write_root(base / "ours" / "root"), write_root(base / "psychopy" / "root")
    hosts = {
        "ours": Host("ours", "host_ours.py", ["--root", str(ours_root), "--data", str(base / "ours" / "data"),
                                              "--token", TOKEN, "--window", json.dumps(OURS_WINDOW),
                                              "--priority", ours_priority],
                     base / "ours.log"),
        "psychopy": Host("psychopy", "host_psychopy.py", ["--root", str(psy_root), "--data",
                                                          str(base / "psychopy" / "data"), "--window",
                                                          json.dumps(PSY_WINDOW)], base / "psychopy.log"),
        "floor": Host("floor", "host_echo.py", [], base / "floor.log"),
    }
    try:
        for host in hosts.values():
            host.wait_ready(240)
            log(f"{host.name} ready in {host.ready_seconds:.1f} s: {host.url}")
    except Exception:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: dict[str, Host]) -> None:
    for host in hosts.values():
        if host.process.poll() is None:
            try:
                host.resume()  # a SIGSTOPped host cannot read its stop line
            except ProcessLookupError:
                pass
            host.stop(60)


# --- the run -------------------------------------------------------------------------------------

class Runner:
    """Runs the measures in order, each bounded in time; a failed one is recorded and the run goes on."""

    def __init__(self, stacks: m.Stacks, settings: Settings) -> None:
        self.stacks = stacks
        self.s = settings
        self.results: dict[str, Any] = {}
        self.quiet = noise.QuietWaiter(settings.quiet_budget_s, settings.quiet_per_step_s)

    async def step(self, name: str, make: Callable[[], Awaitable[dict]], limit: float,
                   recover: Callable[[], Awaitable[None]] | None = None) -> None:
        """Wait (bounded) for a quiet machine, run one measure, record how quiet it stayed."""
        quiet = self.quiet.wait()
        if quiet["waited_s"] >= 1.0:
            log(f"waited {quiet['waited_s']} s for other processes to leave the CPU "
                f"(foreign load now {quiet['foreign_cores_before']:.2f} cores)")
        log(f"{name} ...")
        t0 = time.perf_counter()
        before = noise.sample()
        try:
            result = await asyncio.wait_for(make(), limit)
        except Exception as exc:  # noqa: BLE001 - report it, keep measuring the rest
            result = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{name} FAILED: {result['error']}")
            if recover is not None:
                try:
                    await asyncio.wait_for(recover(), 90)
                except Exception as rexc:  # noqa: BLE001
                    log(f"recovery after {name} failed: {rexc!r}")
        result["seconds"] = round(time.perf_counter() - t0, 2)
        result["noise"] = {**noise.between(before, noise.sample()), **quiet}
        if result["noise"]["foreign_cores"] >= noise.QUIET_CORES:
            log(f"{name}: other processes used {result['noise']['foreign_cores']:.2f} cores meanwhile "
                "(flagged as disturbed)")
        self.results[name] = result

    async def recover_ours(self) -> None:
        """Stop whatever run a failed measure left behind, so the next one is not refused as busy."""
        conn = await m.Ours.open(self.stacks.ours_url, self.stacks.token, "controller")
        try:
            for _ in range(600):
                state = await conn.call("state")
                status = (state.get("result") or {}).get("status")
                if status in ("idle", None):
                    return
                if status in ("running", "paused"):
                    await conn.call("abort", {"grace": 5.0})
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def recover_psychopy(self) -> None:
        conn = await m.Psy.open(self.stacks.psy_url)
        try:
            for _ in range(600):
                status = (await conn.call("session", "getStatus")).get("result")
                if status in (0, None):
                    return
                await conn.call("session", "stopExperiment")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def shared(self) -> None:
        s = self.s
        await self.step("round_trips", lambda: m.round_trips(self.stacks, s.round_trips, s.rounds), 300)
        await self.step("psychopy_queued", lambda: m.psychopy_queued(self.stacks, s.psy_queued), 120)

    async def ours(self) -> None:
        s, st, rec = self.s, self.stacks, self.recover_ours
        await self.step("ours_pause", lambda: m.ours_pause(st, s.pause_cycles, s.main_thread_probes), 120, rec)
        for n in (1, 10):
            await self.step(f"ours_fanout_{n}", lambda n=n: m.ours_fanout(st, n, s.ours_rows, s.fanout_timeout,
                                                                           s.stall), s.fanout_timeout + 90, rec)
        # the goal's rate, paced by the experiment: does delivery keep up, and with what lag?
        await self.step("ours_fanout_10_paced", lambda: m.ours_fanout(st, 10, s.ours_rows, s.fanout_timeout,
                                                                      s.stall, paced=PACED_RATE),
                        s.fanout_timeout + 90, rec)
        for loaded in (False, True):
            await self.step(f"ours_frames_{'loaded' if loaded else 'idle'}",
                            lambda loaded=loaded: m.ours_frames(st, s.frames, loaded, spin_ms=s.spin_ms),
                            s.frames / 240 + 120, rec)

    async def psychopy(self) -> None:
        s, st, rec = self.s, self.stacks, self.recover_psychopy
        await self.step("psychopy_pause", lambda: m.psychopy_pause(st, s.pause_cycles), 120, rec)
        for n, rows in ((1, s.psy_rows_1), (10, s.psy_rows_10)):
            await self.step(f"psychopy_fanout_{n}", lambda n=n, rows=rows: m.psychopy_fanout(
                st, n, rows, s.fanout_timeout, s.stall), s.fanout_timeout + 150, rec)
        for loaded in (False, True):
            await self.step(f"psychopy_frames_{'loaded' if loaded else 'idle'}",
                            lambda loaded=loaded: m.psychopy_frames(st, s.frames, loaded, spin_ms=s.spin_ms),
                            s.frames / 240 + 120, rec)


def run_all(hosts: dict[str, Host], settings: Settings) -> dict[str, Any]:
    """Shared round trips with all three up; then ours alone; then PsychoPy alone."""
    stacks = m.Stacks(ours_url=hosts["ours"].url, token=TOKEN, psy_url=hosts["psychopy"].url,
                      echo_url=hosts["floor"].url, hosts=hosts)
    runner = Runner(stacks, settings)
    asyncio.run(runner.shared())
    hosts["floor"].stop(30)
    hosts["psychopy"].suspend()
    try:
        asyncio.run(runner.ours())
    finally:
        hosts["psychopy"].resume()
    log("stopping our server")
    runner.results["ours_shutdown_rc"] = hosts["ours"].stop(90)
    asyncio.run(runner.psychopy())
    return runner.results


# --- main ------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (~1.5 min instead of ~4)")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench.json"))
    parser.add_argument("--rows", type=int, dest="ours_rows", help="rows per fan-out run through our server")
    parser.add_argument("--psy-rows", type=int, dest="psy_rows_1", help="rows of PsychoPy's 1-client fan-out run")
    parser.add_argument("--frames", type=int, help="paced frames per frame-timing run")
    parser.add_argument("--spin-ms", type=float, dest="spin_ms",
                        help="busy-wait this long before each 240 Hz deadline (rest is sleep); default 1.0")
    parser.add_argument("--priority", default="realtime", choices=["normal", "high", "realtime"],
                        help="our experiment thread's priority (liaison serve --priority); default realtime, "
                             "what a stimulus PC should use (serve's default is high)")
    parser.add_argument("--no-wait-quiet", action="store_true",
                        help="do not wait for other processes to leave the CPU before each measure")
    args = parser.parse_args()
    settings = Settings.make(args.quick, ours_rows=args.ours_rows, psy_rows_1=args.psy_rows_1,
                             frames=args.frames, spin_ms=args.spin_ms,
                             quiet_budget_s=0.0 if args.no_wait_quiet else None)

    from session.display import ensure_display

    ensure_display(None)  # one Xvfb for all hosts (they inherit DISPLAY)
    from session import priority
    from session.display import xvfb_pid

    if xvfb_pid() and args.priority != "normal":  # as `liaison serve` does with the Xvfb it starts
        problems = priority.raise_display_server(
            xvfb_pid(), priority.machine_plan() if args.priority == "realtime" else None, args.priority)
        log(f"display server raised for priority {args.priority}" + (f": {problems}" if problems else ""))
    keep = bool(os.environ.get("LIAISON_BENCH_KEEP"))  # keep the servers' data folders to inspect them
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="liaison-bench-")) if keep
          else tempfile.TemporaryDirectory(prefix="liaison-bench-")) as tmp:
        base = Path(tmp)
        log(f"starting the three servers (temp {base})")
        hosts = start_hosts(base, args.priority)
        try:
            results = run_all(hosts, settings)
        finally:
            stop_hosts(hosts)
        host_info = {name: {"ready_s": h.ready_seconds, "info": h.info, "exit": h.process.returncode}
                     for name, h in hosts.items()}
    report: dict[str, Any] = {
        "machine": {**machine_info(ROOT), "loadavg_at_end": list(os.getloadavg())},
        "settings": asdict(settings), "hosts": host_info, "results": results,
    }
    report["goals"] = goals(results)
    report["total_s"] = round(time.perf_counter() - STARTED, 1)
    print(render({**results, "goals": report["goals"]}))
    machine = report["machine"]
    print(f"\nmachine: {machine.get('cpu_model')}, {machine['cpus']} cpus, {machine['memory_gb']} GB, "
          f"Python {machine['python']}, PsychoPy {machine.get('psychopy')}, websockets {machine['websockets']}; "
          f"total {report['total_s']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
