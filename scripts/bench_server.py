#!/usr/bin/env python
"""Measure the liaison server over real WebSockets and print a table (and write JSON).

- floor: round trip of a small JSON message through a bare ``websockets``
  echo server (same library, same loopback, same process layout);
- ``ping`` round trip: answered by the server itself;
- worker command round trip (``get_exp_info``, ``list_experiments``): through
  the pipe to the session's worker process and back, with its ratio to the floor;
- fan-out: one controller pipelines ``annotate`` requests (a window of
  outstanding requests) while 1, then 10, observers count the ``annotation``
  events they receive and their delivery lag (send -> receipt, one clock).

The server runs on its own thread (ServerThread) with its worker process; the
clients run as asyncio tasks in one event loop on the main thread, so clients
and server share this process's GIL. The three round-trip measures are
interleaved in rounds so they see the same machine conditions. On a small VM
a cross-thread round trip is bimodal (threads woken on the same core or on the
other one); ``taskset -c 0`` in front of the command gives steadier numbers.
Numbers are for comparing, on one machine, in one run. Usage:
  .venv/bin/python scripts/bench_server.py [--quick] [--out artifacts/bench_server.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import websockets  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from benchlib.stats import percentiles  # noqa: E402

TOKEN = "bench-token-000000"
WINDOW = {"size": [320, 240], "frame_rate": 60}
WORKER_COMMANDS = ("get_exp_info", "list_experiments")


class BenchError(RuntimeError):
    pass


def as_list(data) -> list:
    return data if isinstance(data, list) else [data]


# --- floor: a bare websockets echo server ---------------------------------------------------

class EchoServer:
    """``websockets`` echo server on 127.0.0.1, on its own thread and event loop (like the server)."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="echo", daemon=True)

    async def _echo(self, ws) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "EchoServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("echo server did not start")
        return self

    def __exit__(self, *exc_info) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# --- liaison clients ----------------------------------------------------------------------

async def open_client(url: str, role: str):
    ws = await connect(url, compression=None, max_size=None, ping_interval=None)
    hello = json.loads(await ws.recv())
    if hello.get("type") != "hello":
        raise BenchError(f"expected hello, got {hello!r}")
    await ws.send(json.dumps({"v": 1, "type": "auth", "token": TOKEN, "role": role, "since": None}))
    while True:  # events may not precede the welcome, but be lenient
        for message in as_list(json.loads(await ws.recv())):
            if message.get("type") == "welcome":
                return ws
            if message.get("type") == "reply" and not message.get("ok"):
                raise BenchError(f"authentication failed: {message!r}")


async def request(ws, request_id, cmd: str, args: dict | None = None) -> tuple[dict, int]:
    """Send one request and read until its reply; returns (reply, events skipped)."""
    await ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args or {}}))
    skipped = 0
    while True:
        for message in as_list(json.loads(await ws.recv())):
            if message.get("type") == "reply" and message.get("id") == request_id:
                return message, skipped
            skipped += 1


class Echo:
    """A connection to the floor echo server, answering ``request`` like a liaison connection."""

    def __init__(self, ws) -> None:
        self.ws = ws

    async def call(self, request_id, cmd: str) -> tuple[dict, int]:
        await self.ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": {}}))
        echoed = json.loads(await self.ws.recv())
        if echoed.get("id") != request_id:
            raise BenchError(f"echo returned {echoed!r}")
        return {"ok": True}, 0


async def bench_latency(url: str, n: int, rounds: int) -> dict:
    """Sequential round trips of each measure, interleaved in rounds (the first round is warm-up).

    Interleaving makes the measures share whatever the machine is doing meanwhile
    (other processes, which core the scheduler picks), so their ratios stay fair.
    """
    per_round = max(1, n // rounds)
    with EchoServer() as echo:
        async with connect(f"ws://127.0.0.1:{echo.port}/", compression=None, max_size=None,
                           ping_interval=None) as echo_ws:
            controller = await open_client(url, "controller")
            try:
                floor = Echo(echo_ws)

                async def liaison(request_id, cmd):
                    return await request(controller, request_id, cmd)

                measures = {"floor": (floor.call, "ping"), "ping": (liaison, "ping")}
                failed = {}
                for cmd in WORKER_COMMANDS:  # only those that work between runs
                    reply, _ = await request(controller, f"probe-{cmd}", cmd)
                    if reply.get("ok"):
                        measures[cmd] = (liaison, cmd)
                    else:
                        failed[cmd] = {"error": reply.get("error")}
                samples: dict[str, list[float]] = {name: [] for name in measures}
                skipped = dict.fromkeys(measures, 0)
                request_id = 0
                for round_no in range(rounds + 1):
                    for name, (call, cmd) in measures.items():
                        for _ in range(per_round):
                            request_id += 1
                            t0 = time.perf_counter()
                            reply, extra = await call(request_id, cmd)
                            dt = time.perf_counter() - t0
                            skipped[name] += extra
                            if not reply.get("ok"):
                                raise BenchError(f"{cmd} failed: {reply.get('error')!r}")
                            if round_no:
                                samples[name].append(dt * 1e6)
            finally:
                await controller.close()
    results = {}
    for name, values in samples.items():
        results[name] = percentiles(values)
        results[name]["events_skipped"] = skipped[name]
    results.update(failed)
    return results


# --- fan-out ------------------------------------------------------------------------------

@dataclass
class ObserverStats:
    n_events: int
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    frames: int = 0
    batched_frames: int = 0
    max_batch: int = 0
    last_index: int = -1
    last_receive: float | None = None
    lags_ms: list[float] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    goodbye: dict | None = None
    seen: bytearray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.seen = bytearray(self.n_events)


async def observe(ws, stats: ObserverStats, prefix: str, progress: asyncio.Event) -> None:
    try:
        async for raw in ws:
            now = time.perf_counter()
            data = json.loads(raw)
            items = as_list(data)
            stats.frames += 1
            if isinstance(data, list):
                stats.batched_frames += 1
                stats.max_batch = max(stats.max_batch, len(items))
            for message in items:
                if message.get("type") == "goodbye":
                    stats.goodbye = message
                if message.get("type") != "event" or message.get("event") != "annotation":
                    continue
                text = message["data"]["text"]
                if not text.startswith(prefix):
                    continue
                _, index, sent = text.split(":")
                index = int(index)
                if stats.seen[index]:
                    stats.duplicates += 1
                    continue
                stats.seen[index] = 1
                if index < stats.last_index:
                    stats.out_of_order += 1
                stats.last_index = index
                stats.received += 1
                stats.last_receive = now
                stats.lags_ms.append((now - float(sent)) * 1e3)
            progress.set()
    except ConnectionClosed as exc:
        if exc.rcvd is not None:
            stats.close_code, stats.close_reason = exc.rcvd.code, exc.rcvd.reason
    else:  # closed cleanly by the server
        if ws.close_code is not None:
            stats.close_code, stats.close_reason = ws.close_code, ws.close_reason


async def bench_fanout(url: str, n_clients: int, n_events: int, window: int, phase: str,
                       timeout: float, stall: float) -> dict:
    prefix = f"{phase}:"
    observers = [await open_client(url, "observer") for _ in range(n_clients)]
    controller = await open_client(url, "controller")
    # The controller only wants its replies: drop its catch-all subscription.
    reply, _ = await request(controller, "unsub", "unsubscribe", {"topics": ["all"]})
    if not reply.get("ok") or reply["result"]["topics"]:
        raise BenchError(f"could not unsubscribe the controller: {reply!r}")
    stats = [ObserverStats(n_events) for _ in range(n_clients)]
    progress = asyncio.Event()
    tasks = [asyncio.create_task(observe(ws, st, prefix, progress)) for ws, st in zip(observers, stats)]

    slots = asyncio.Semaphore(window)
    replies = {"ok": 0, "error": 0, "errors": {}, "last": None}
    send_times = [0.0] * n_events
    reply_ms: list[float] = []
    all_replied = asyncio.Event()

    async def read_replies() -> None:
        try:
            async for raw in controller:
                now = time.perf_counter()
                for message in as_list(json.loads(raw)):
                    if message.get("type") != "reply":
                        continue
                    if isinstance(message.get("id"), int):
                        reply_ms.append((now - send_times[message["id"]]) * 1e3)
                    if message.get("ok"):
                        replies["ok"] += 1
                    else:
                        replies["error"] += 1
                        code = (message.get("error") or {}).get("code", "?")
                        replies["errors"][code] = replies["errors"].get(code, 0) + 1
                    slots.release()
                    if replies["ok"] + replies["error"] >= n_events:
                        replies["last"] = time.perf_counter()
                        all_replied.set()
        except ConnectionClosed as exc:
            replies["controller_closed"] = [exc.rcvd.code, exc.rcvd.reason] if exc.rcvd else None
            all_replied.set()

    reader = asyncio.create_task(read_replies())
    deadline = time.perf_counter() + timeout
    t_first = time.perf_counter()
    sent = 0
    for i in range(n_events):
        try:
            await asyncio.wait_for(slots.acquire(), max(0.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            break
        t = send_times[i] = time.perf_counter()
        await controller.send(json.dumps({"v": 1, "type": "request", "id": i, "cmd": "annotate",
                                          "args": {"text": f"{prefix}{i}:{t!r}"}}))
        sent += 1
    t_sent = time.perf_counter()
    try:
        await asyncio.wait_for(all_replied.wait(), max(0.1, deadline - time.perf_counter()))
    except asyncio.TimeoutError:
        pass
    # Wait for every observer to have everything (or be cut off), bounded by the deadline and by
    # `stall` seconds without any progress.
    while time.perf_counter() < deadline:
        if all(st.received >= sent or task.done() for st, task in zip(stats, tasks)):
            break
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), min(stall, max(0.01, deadline - time.perf_counter())))
        except asyncio.TimeoutError:
            break
    for ws in observers + [controller]:
        await ws.close()
    for task in tasks + [reader]:
        try:
            await asyncio.wait_for(task, 5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    received = [st.received for st in stats]
    complete = sent == n_events and all(r == n_events for r in received)
    last_delivery = max((st.last_receive for st in stats if st.last_receive), default=None)
    # Rates only mean something when every observer got every event.
    elapsed = (last_delivery - t_first) if last_delivery and complete else None
    lags = [lag for st in stats for lag in st.lags_ms]
    result = {
        "clients": n_clients, "events": n_events, "sent": sent, "window": window, "complete": complete,
        "replies_ok": replies["ok"], "replies_error": replies["error"], "reply_errors": replies["errors"],
        "controller_closed": replies.get("controller_closed"),
        "send_seconds": t_sent - t_first,
        "all_replied_seconds": (replies["last"] - t_first) if replies["last"] else None,
        "seconds_to_last_delivery": elapsed,
        "events_per_s": n_events / elapsed if elapsed else None,
        "deliveries_per_s": n_events * n_clients / elapsed if elapsed else None,
        "accepted_per_s": (replies["ok"] / (replies["last"] - t_first)) if replies["last"] else None,
        "received_per_client": received,
        "lost": n_events * n_clients - sum(received),
        "lost_per_client": [n_events - r for r in received],
        "duplicates": sum(st.duplicates for st in stats),
        "out_of_order": sum(st.out_of_order for st in stats),
        "frames_per_client": [st.frames for st in stats],
        "batched_frames_per_client": [st.batched_frames for st in stats],
        "max_batch": max((st.max_batch for st in stats), default=0),
        "closed_by_server": [
            {"client": k, "code": st.close_code, "reason": st.close_reason, "received": st.received,
             "goodbye": st.goodbye}
            for k, st in enumerate(stats) if st.close_code is not None and st.close_code != 1000
        ],
        "lag_ms": percentiles(lags),
        "annotate_reply_ms": percentiles(reply_ms),
    }
    return result


# --- the liaison server -------------------------------------------------------------------

def make_root(base: Path) -> Path:
    """A session root holding a copy of the test experiments (as tests/conftest.py does)."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "tests" / "experiments", root / "fixtures", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


async def bench_liaison(url: str, args, n: int, n_events: int, timeout: float) -> dict:
    latency = await bench_latency(url, n, args.rounds)
    results: dict = {
        "floor_us": latency.pop("floor"),
        "ping_us": latency.pop("ping"),
        "worker_command_us": latency,
    }
    floor_p50 = results["floor_us"]["p50"]
    results["ratio_p50_to_floor"] = {"ping": results["ping_us"]["p50"] / floor_p50, **{
        cmd: stats["p50"] / floor_p50 for cmd, stats in latency.items() if "p50" in stats}}
    results["fanout"] = {}
    for n_clients in args.clients:
        results["fanout"][f"{n_clients}_observer" + ("s" if n_clients != 1 else "")] = await bench_fanout(
            url, n_clients, n_events, args.window, f"c{n_clients}", timeout, args.stall)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_server.json"))
    parser.add_argument("--quick", action="store_true", help="fewer samples (~15 s)")
    parser.add_argument("-n", type=int, help="round trips per latency measure (default 2000, quick 300)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleave the latency measures in this many rounds (plus one warm-up round)")
    parser.add_argument("--events", type=int, help="annotations per fan-out run (default 20000, quick 3000)")
    parser.add_argument("--window", type=int, default=200, help="outstanding annotate requests")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10],
                        help="observer counts for the fan-out runs, comma-separated (default 1,10)")
    parser.add_argument("--timeout", type=float, help="limit per fan-out run, s (default 30, quick 10)")
    parser.add_argument("--stall", type=float, default=5.0, help="give up after this long without progress, s")
    parser.add_argument("--queue-limit", type=int, default=None,
                        help="server client_queue_limit (default: ServerConfig's)")
    args = parser.parse_args()
    n = args.n or (300 if args.quick else 2000)
    n_events = args.events or (3000 if args.quick else 20000)
    timeout = args.timeout or (10.0 if args.quick else 30.0)

    from session.display import ensure_display
    from liaison.server import ServerConfig, ServerThread

    ensure_display(None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="liaison-bench-server-") as tmp:
        base = Path(tmp)
        extra = {} if args.queue_limit is None else {"client_queue_limit": args.queue_limit}
        config = ServerConfig(root=make_root(base), port=0, token=TOKEN, data_dir=base / "data",
                              window=WINDOW, **extra)
        thread = ServerThread(config)
        t0 = time.perf_counter()
        with thread:
            startup = time.perf_counter() - t0
            results = asyncio.run(bench_liaison(thread.url, args, n, n_events, timeout))
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "loadavg_at_end": list(os.getloadavg()),
                    "websockets": websockets.__version__},
        "settings": {"quick": args.quick, "round_trips": n, "rounds": args.rounds,
                     "warmup": f"one extra round of {max(1, n // args.rounds)} per measure", "events": n_events,
                     "window": args.window, "clients": args.clients, "timeout_s": timeout,
                     "client_queue_limit": config.client_queue_limit, "server_window": WINDOW,
                     "controller_subscription": "none (unsubscribed from all; replies only)"},
        "server_startup_s": startup,
        **results,
        "total_s": time.perf_counter() - started,
    }

    floor_p50 = results["floor_us"]["p50"]
    print(f"{'measure':40} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}  unit / note")
    rows = [("floor: websockets echo", results["floor_us"], "us"),
            ("liaison ping", results["ping_us"], f"us  x{results['ping_us']['p50'] / floor_p50:.1f} floor p50")]
    for cmd, stats in results["worker_command_us"].items():
        if "p50" in stats:
            rows.append((f"liaison {cmd} (worker)", stats, f"us  x{stats['p50'] / floor_p50:.1f} floor p50"))
        else:
            print(f"{'liaison ' + cmd + ' (worker)':40} failed when idle: {stats['error']}")
    for name, fan in results["fanout"].items():
        rows.append((f"fan-out {name.replace('_', ' ')}: lag", fan["lag_ms"], "ms annotate sent -> event received"))
        rows.append((f"fan-out {name.replace('_', ' ')}: reply", fan["annotate_reply_ms"],
                     f"ms annotate sent -> reply ({fan['window']} outstanding)"))
    for name, stats, unit in rows:
        if stats.get("n"):
            print(f"{name:40} {stats['p50']:9.1f} {stats['p90']:9.1f} {stats['p99']:9.1f} {stats['max']:9.1f}  {unit}")
        else:
            print(f"{name:40} {'-':>9} {'-':>9} {'-':>9} {'-':>9}  {unit} (no samples)")
    fmt = lambda v: f"{v:,.0f}" if v is not None else "-"  # noqa: E731
    for name, fan in results["fanout"].items():
        print(f"{'fan-out ' + name.replace('_', ' ') + ': rate':40} {fmt(fan['events_per_s'])} events/s, "
              f"{fmt(fan['deliveries_per_s'])} deliveries/s, {fmt(fan['accepted_per_s'])} requests/s accepted; "
              f"lost {fan['lost']}, dup {fan['duplicates']}, out of order {fan['out_of_order']}, "
              f"errors {fan['replies_error']}")
        for closed in fan["closed_by_server"]:
            print(f"    client {closed['client']} closed by server: code {closed['code']} "
                  f"({closed['reason']}) after {closed['received']} events")
        if not fan["complete"]:
            print("    INCOMPLETE: not every observer received every event; no events/s or deliveries/s")
        if fan["sent"] < fan["events"]:
            print(f"    only {fan['sent']} of {fan['events']} annotations sent within {timeout:g} s")
    print(f"server start-up {startup:.1f} s; total {report['total_s']:.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
