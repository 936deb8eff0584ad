"""The measures, one coroutine each; every one returns a plain, JSON-ready dict.

Times: round trips use ``time.perf_counter()`` in the bench process. Latencies
that cross processes (pause observed, event delivery lag) compare wall clocks,
``time.time()``, taken on the same machine: our events carry the worker's
``time.time()`` at publish, and the bench experiments write ``time.time()``
when they observe PAUSED or complete a row.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .hosts import Host, alone, bench_cpu, cpu_delta
from .stats import median, percentiles, rate
from .wire import Echo, Ours, Psy, trials_data_summary

TRIAL_MARKS = (10, 100, 1000)  # trials at which bytes per trial are reported (measure 6)
RUN_ENDED = ('{"method": "runExperiment"', '{"type": "error"')  # SessionQueue result of runExperiment


@dataclass
class Stacks:
    """Where the three servers are, and their hosts (for CPU accounting)."""

    ours_url: str
    token: str
    psy_url: str
    echo_url: str | None
    hosts: dict[str, Host] = field(default_factory=dict)

    def alone(self, name: str | None):
        """Context: the other servers SIGSTOPped while ``name`` is measured (see ``hosts.alone``)."""
        return alone(self.hosts, name)

    def cpu(self) -> dict[str, dict[str, float]]:
        snapshot = {name: host.cpu_seconds() for name, host in self.hosts.items() if host.process.poll() is None}
        snapshot["bench"] = {"clients": bench_cpu()}
        return snapshot


def psy_exp_info(key: str, **values: Any) -> dict[str, Any]:
    """expInfo for PsychoPy's runExperiment: it does not fill in ``date`` itself (Builder's dialog does)."""
    return {"participant": "bench", "session": "001", "date": time.strftime("%Y-%m-%d_%Hh%M.%S"),
            "expName": key, **values}


def match_after(sent: list[float], seen: list[float]) -> list[float]:
    """For each send time, (first observation at or after it and before the next send) - send time."""
    out, j, seen = [], 0, sorted(seen)
    for i, t_send in enumerate(sent):
        next_send = sent[i + 1] if i + 1 < len(sent) else float("inf")
        while j < len(seen) and seen[j] < t_send:
            j += 1
        if j < len(seen) and seen[j] < next_send:
            out.append(seen[j] - t_send)
            j += 1
    return out


def gc_from_rows(rows: list[dict]) -> dict:
    """The experiment's own longest GC pause (and its generation) from its rows' running maximum."""
    best = max((r for r in rows if r.get("gc_max_ms") is not None), key=lambda r: r["gc_max_ms"], default=None)
    if best is None:
        return {"gc_max_ms_by_experiment": None, "gc_max_generation": None}
    return {"gc_max_ms_by_experiment": best["gc_max_ms"], "gc_max_generation": best.get("gc_max_generation")}


def gc_from_record(record: dict) -> dict:
    return {"gc_max_ms_by_experiment": record.get("gc_max_ms"), "gc_max_generation": record.get("gc_max_generation"),
            "gc_by_generation": record.get("gc_by_generation")}


async def wait_for_progress(done: Callable[[], bool], progress: Callable[[], float], timeout: float,
                            stall: float) -> str:
    """Poll until ``done()``; give up after ``timeout`` s, or ``stall`` s without ``progress()`` moving."""
    deadline = time.monotonic() + timeout
    last_value, last_change = progress(), time.monotonic()
    while True:
        if done():
            return "done"
        now = time.monotonic()
        value = progress()
        if value != last_value:
            last_value, last_change = value, now
        if now - last_change > stall:
            return f"stalled ({stall:g} s without progress)"
        if now > deadline:
            return f"timed out after {timeout:g} s"
        await asyncio.sleep(0.05)


# --- 1 + 2: round trips ------------------------------------------------------------------------

async def round_trips(stacks: Stacks, n: int, rounds: int) -> dict:
    """Sequential round trips of cheap calls, interleaved in rounds so all see the same machine state.

    floor: our ``ping`` request text echoed by bare websockets. ours: ``ping``
    (answered by the server process) and ``get_exp_info`` (a worker command:
    server -> pipe -> worker process -> back). PsychoPy: ``liaison.pingPong``
    (its cheapest call: a no-op on the liaison thread) and
    ``session.getCurrentExpInfo`` (a Session method; the liaison runs it on its
    own thread). Round 0 is warm-up and not counted. While one stack is
    measured the other servers are SIGSTOPped: rounds still interleave (slow
    drifts hit all alike) but no idle server competes for the 2 cores.
    """
    echo = await Echo.open(stacks.echo_url)
    ours = await Ours.open(stacks.ours_url, stacks.token, "controller")
    await ours.call("unsubscribe", {"topics": ["all"]})  # replies only, no events in between
    psy = await Psy.open(stacks.psy_url)

    async def ok_ours(cmd):
        reply = await ours.call(cmd)
        return bool(reply.get("ok"))

    async def ok_psy(obj, method):
        return "result" in await psy.call(obj, method)

    async def ok_echo():
        await echo.call()
        return True

    measures: dict[str, tuple[str, Callable[[], Awaitable[bool]]]] = {
        "floor_echo": ("floor", ok_echo),
        "ours_ping": ("ours", lambda: ok_ours("ping")),
        "ours_get_exp_info": ("ours", lambda: ok_ours("get_exp_info")),
        "psychopy_pingPong": ("psychopy", lambda: ok_psy("liaison", "pingPong")),
        "psychopy_getCurrentExpInfo": ("psychopy", lambda: ok_psy("session", "getCurrentExpInfo")),
    }
    per_round = max(1, -(-n // rounds))
    samples: dict[str, list[float]] = {name: [] for name in measures}
    slow_at: dict[str, list[int]] = {name: [] for name in measures}  # position in its block of calls > 1 ms
    failures = dict.fromkeys(measures, 0)
    cpu0 = stacks.cpu()
    try:
        for round_no in range(rounds + 1):
            for name, (stack, call) in measures.items():
                with stacks.alone(stack):
                    await call()  # first call after the others froze: not counted
                    for position in range(per_round):
                        t0 = time.perf_counter()
                        ok = await call()
                        dt = time.perf_counter() - t0
                        if not ok:
                            failures[name] += 1
                        elif round_no:
                            samples[name].append(dt)
                            if dt > 1e-3 and len(slow_at[name]) < 100:
                                slow_at[name].append(position)
    finally:
        for client in (echo, ours, psy):
            await client.close()
    out = {name: {**percentiles(values, 1e6), "failures": failures[name], "slow_positions": slow_at[name]}
           for name, values in samples.items()}
    out["unit"] = "us"
    out["cpu_s"] = cpu_delta(cpu0, stacks.cpu())
    return out


async def psychopy_queued(stacks: Stacks, n: int, seed: int = 1) -> dict:
    """PsychoPy's main-thread path: ``SessionQueue.queueTask("session.getTime")`` until its result broadcast.

    The liaison turns the argument ``"session.getTime"`` into the bound method;
    the SessionQueue runs it on the main thread at its next turn (it sleeps
    0.1 s per turn and flips the window in ``onIdle``) and broadcasts
    ``{"method": "getTime", "returned": ...}``. Each call starts after a random
    0-100 ms pause so calls land at random phases of the queue's polling, as
    real commands would.
    """
    rng = random.Random(seed)
    psy = await Psy.open(stacks.psy_url)
    acked, done, failures = [], [], 0
    try:
        with stacks.alone("psychopy"):
            await _queued_calls(psy, n, rng, acked, done)
    finally:
        await psy.close()
    failures = n - len(done)
    return {"executed_ms": percentiles(done, 1e3), "acked_ms": percentiles(acked, 1e3), "failures": failures,
            "how": "send queueTask -> receive the SessionQueue's broadcast of the result (random 0-100 ms phase)"}


async def _queued_calls(psy: Psy, n: int, rng: random.Random, acked: list, done: list) -> None:
    for i in range(n + 1):
        await asyncio.sleep(rng.uniform(0.0, 0.1))
        t0 = time.perf_counter()
        await psy.ws.send(Psy.call_text(f"q{i}", "SessionQueue", "queueTask", ["session.getTime"]))
        t_ack = None
        while True:
            raw = await asyncio.wait_for(psy.ws.recv(), 10)
            now = time.perf_counter()
            if raw.startswith('{"result": '):
                t_ack = now
            elif raw.startswith('{"method": "getTime"'):
                break
            elif raw.startswith('{"type": "error"'):
                t_ack = None
                break
        if i and t_ack is not None:
            acked.append(t_ack - t0)
            done.append(now - t0)


# --- 3: pause latency ----------------------------------------------------------------------------

async def ours_pause(stacks: Stacks, cycles: int, probes: int, frames_per_trial: int = 10, seed: int = 2) -> dict:
    """Run ``pause_bench`` through our server; pause/resume it ``cycles`` times.

    Latency = the ``run_paused`` event's ``time`` (set by the worker when the
    experiment's own status read applied the pause, i.e. when it observes
    PAUSED) minus ``time.time()`` just before the client sent ``pause``. The
    experiment also writes the time it saw PAUSED into its rows
    (``paused_seen``); both are reported. Before pausing, ``probes`` ``add_data``
    round trips measure a command executed on the experiment's main thread
    (applied at its next frame) during a run.
    """
    rng = random.Random(seed)
    key = "pause_bench"
    paused: asyncio.Queue = asyncio.Queue()
    running = asyncio.Event()
    finished: asyncio.Future = asyncio.get_running_loop().create_future()
    rows: list[dict] = []

    def on_event(message: dict, now: float) -> None:
        event, data = message["event"], message["data"]
        if data.get("key") != key:
            return
        if event == "run_paused":
            paused.put_nowait(message)
        elif event == "data_rows":
            rows.extend(data["rows"])
        elif event == "status" and data.get("status") == "running":
            running.set()
        elif event in ("run_finished", "run_failed") and not finished.done():
            finished.set_result(message)

    ctl = await Ours.open(stacks.ours_url, stacks.token, "controller", on_event=on_event)
    ctl.start_reader()
    sent_at, latency, worker_latency, pause_rtt, probe_rtt, probe_fail = [], [], [], [], [], 0
    try:
        await ctl.checked("run", {"key": key, "exp_info": {"participant": "bench", "n_trials": 50_000,
                                                           "frames_per_trial": frames_per_trial}})
        await asyncio.wait_for(running.wait(), 60)
        await asyncio.sleep(0.5)  # past the experiment's start-up (first frames, stimulus creation)
        for i in range(probes):
            await asyncio.sleep(rng.uniform(0.0, 0.01))
            t0 = time.perf_counter()
            reply = await ctl.request("add_data", {"name": "bench_probe", "value": i})
            if reply.get("ok"):
                probe_rtt.append(time.perf_counter() - t0)
            else:
                probe_fail += 1
        for _ in range(cycles):
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            t_send = time.time()
            t0 = time.perf_counter()
            await ctl.checked("pause")
            pause_rtt.append(time.perf_counter() - t0)
            event = await asyncio.wait_for(paused.get(), 10)
            sent_at.append(t_send)
            latency.append(event["time"] - t_send)
            worker_latency.append(event["data"]["latency"])
            await ctl.checked("resume")
        await ctl.checked("stop")
        end = await asyncio.wait_for(finished, 60)
    finally:
        await ctl.close()
    seen = [float(t) for row in rows for t in str(row.get("paused_seen") or "").split(";") if t]
    observed = match_after(sent_at, seen)  # the last trial's row may be cut short by the stop
    return {
        "pause_to_observed_ms": percentiles(latency, 1e3),
        "pause_to_observed_by_experiment_ms": percentiles(observed, 1e3),
        "worker_queue_to_applied_ms": percentiles(worker_latency, 1e3),
        "pause_reply_round_trip_ms": percentiles(pause_rtt, 1e3),
        "main_thread_command_during_run_ms": {**percentiles(probe_rtt, 1e3), "failures": probe_fail,
                                              "command": "add_data (applied at the experiment's next frame)"},
        "frame_period_ms": median(r.get("frame_ms_mean") for r in rows),
        "frame_interval_max_ms": percentiles([r["frame_ms_max"] for r in rows if r.get("frame_ms_max")]),
        "frames_per_trial": frames_per_trial,
        "trials": len(rows),
        "outcome": end["data"].get("outcome"),
        "gc_max_pause_ms": (end["data"].get("gc_max_pause") or 0.0) * 1e3,
        **gc_from_rows(rows),
    }


async def psychopy_pause(stacks: Stacks, cycles: int, frames_per_trial: int = 10, seed: int = 2) -> dict:
    """The same experiment and pause/resume cycles through PsychoPy's liaison + Session.

    ``session.pauseExperiment`` runs on the liaison thread and sets the running
    ExperimentHandler's status at once; the experiment sees PAUSED at its next
    status read and records ``time.time()`` (``RECORD["paused_at"]``, read back
    from the host). Before resuming we poll ``bench.pausedCount`` (from 20 ms
    after the pause, so the polling cannot delay the observation) until the
    experiment has observed the pause.
    """
    rng = random.Random(seed)
    key = "pause_bench"
    started = asyncio.Event()
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_broadcast(raw: str, now: float) -> None:
        if raw.startswith('{"type": "experiment_status"'):
            message = json.loads(raw)
            if message.get("name") == key and message.get("status") == 1:
                started.set()
        elif raw.startswith(RUN_ENDED) and not done.done():
            done.set_result(raw)

    psy = await Psy.open(stacks.psy_url, on_broadcast)
    psy.start_reader()
    sent_at, pause_rtt, unobserved = [], [], 0
    try:
        await psy.checked("session", "runExperiment",
                          [key, psy_exp_info(key, n_trials=50_000, frames_per_trial=frames_per_trial), False])
        await asyncio.wait_for(started.wait(), 60)
        await asyncio.sleep(0.5)
        for i in range(cycles):
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            t_send = time.time()
            t0 = time.perf_counter()
            await psy.checked("session", "pauseExperiment")
            pause_rtt.append(time.perf_counter() - t0)
            sent_at.append(t_send)
            # Each liaison call costs the experiment's process GIL time (and a flushed log line):
            # poll only once the pause has surely been observed, not while it is being measured.
            await asyncio.sleep(0.02)
            deadline = time.monotonic() + 5
            while await psy.checked("bench", "pausedCount", [key]) <= i:
                if time.monotonic() > deadline:
                    unobserved += 1
                    break
                await asyncio.sleep(0.002)
            await psy.checked("session", "resumeExperiment")
        await psy.checked("session", "stopExperiment")
        end = await asyncio.wait_for(done, 60)
        record = await psy.checked("bench", "record", [key])
    finally:
        await psy.close()
    seen = record.get("paused_at", [])
    latency = match_after(sent_at, seen)
    frame_ms = record.get("trial_frame_ms", [])
    return {
        "pause_to_observed_ms": percentiles(latency, 1e3),
        "pause_reply_round_trip_ms": percentiles(pause_rtt, 1e3),
        "unobserved": unobserved,
        "observations": len(seen),
        "frame_period_ms": median(frame_ms),
        "frames_per_trial": frames_per_trial,
        "trials": len(frame_ms),
        "end": end[:200],
        **gc_from_record(record),
        "main_thread_command_during_run": "n/a: the SessionQueue is not serviced while runExperiment holds "
                                          "the main thread; liaison calls run on the liaison thread instead",
    }


# --- 4 + 6: fan-out of a real run's rows ----------------------------------------------------------

class RowsObserver:
    """Counts our ``data_rows`` events for one run: loss, duplicates, lag, bytes (one client)."""

    def __init__(self, key: str, track_sizes: bool = False) -> None:
        self.key = key
        self.track_sizes = track_sizes
        self.rows = self.next_row = self.gaps = self.duplicates = 0
        self.frames = self.batched = self.bytes = 0
        self.lags: list[float] = []
        self.first_time = self.last_time = self.last_receive = None
        self.sizes_at: dict[int, float] = {}
        self.bytes_at: dict[int, int] = {}
        self.base_bytes = 0  # bytes received before the run was requested (welcome, status...)
        self.last_row: dict | None = None
        self.end: dict | None = None

    def on_frame(self, raw: str, items: list, now: float) -> None:
        self.frames += 1
        self.bytes += len(raw)
        if len(items) > 1:
            self.batched += 1
        share = len(raw) / len(items)
        for message in items:
            if message.get("type") != "event":
                continue
            data = message["data"]
            if data.get("key") != self.key:
                continue
            event = message["event"]
            if event == "data_rows":
                first, count = data["first_row"], len(data["rows"])
                if first < self.next_row:
                    self.duplicates += count
                    continue
                if first > self.next_row:
                    self.gaps += first - self.next_row
                self.next_row = first + count
                self.rows += count
                self.lags.append(now - message["time"])
                if self.first_time is None:
                    self.first_time = message["time"]
                self.last_time, self.last_receive = message["time"], now
                if self.track_sizes:
                    for mark in TRIAL_MARKS:
                        if first < mark <= first + count:
                            self.sizes_at[mark] = share / count
                            self.bytes_at[mark] = self.bytes - self.base_bytes
                    if "gc_max_ms" in data["rows"][-1]:
                        self.last_row = data["rows"][-1]
            elif event in ("run_finished", "run_failed"):
                self.end = message


async def ours_fanout(stacks: Stacks, n_clients: int, n_rows: int, timeout: float, stall: float,
                      paced: float = 0.0) -> dict:
    """``rows_bench`` (one row + ``sendExperimentData()`` per trial, no flips) through our server to N clients.

    Client 0 is the controller that starts the run (it receives events too), so
    N clients each get every event. Counts ``data_rows`` rows per client (no
    loss: ``first_row`` contiguous; no duplicates), lag = receive time - event
    ``time``, and bytes. Rates are over [first row's event time, last delivery].
    """
    key = "rows_bench"
    observers = [RowsObserver(key, track_sizes=(i == 0)) for i in range(n_clients)]
    conns = []
    for i, obs in enumerate(observers):
        conns.append(await Ours.open(stacks.ours_url, stacks.token, "controller" if i == 0 else "observer",
                                     on_frame=obs.on_frame))
    for conn in conns:
        conn.start_reader()
    cpu0 = stacks.cpu()
    for obs in observers:
        obs.base_bytes = obs.bytes
    t_start = time.time()
    try:
        await conns[0].checked("run", {"key": key, "exp_info": {"participant": "bench", "n_trials": n_rows,
                                                                "flip_every": 0, "rate": paced}})
        ended = await wait_for_progress(
            lambda: all(o.end is not None or c.closed for o, c in zip(observers, conns)),
            lambda: sum(o.rows for o in observers), timeout, stall)
    finally:
        cpu = cpu_delta(cpu0, stacks.cpu())
        for conn in conns:
            await conn.close()
    end = next((o.end for o in observers if o.end), None)
    expected = end["data"]["rows"] if end else n_rows
    received = [o.rows for o in observers]
    complete = all(r == expected for r in received) and not any(o.duplicates for o in observers)
    first = min((o.first_time for o in observers if o.first_time), default=None)
    last_delivery = max((o.last_receive for o in observers if o.last_receive), default=None)
    span = (last_delivery - first) if first and last_delivery else None
    produce_span = (observers[0].last_time - observers[0].first_time) if observers[0].first_time else None
    lead = observers[0]
    return {
        "clients": n_clients, "rows_requested": n_rows, "rows_in_run": expected, "ended": ended,
        "paced_rows_per_s": paced or None,
        "outcome": end["data"].get("outcome") if end else None, "complete": complete,
        "received_per_client": received,
        "lost": sum(max(0, expected - r) for r in received),
        "duplicates": sum(o.duplicates for o in observers), "gaps": sum(o.gaps for o in observers),
        "closed_by_server": [c.closed for c in conns if c.closed and c.closed[0] not in (1000, None)],
        "events_per_s": rate(expected, span) if complete else None,
        "deliveries_per_s": rate(expected * n_clients, span) if complete else None,
        "delivered_rows_per_s": rate(sum(received), span),
        "produced_per_s": rate(lead.rows, produce_span),
        "produced_per_s_by_experiment": (lead.last_row or {}).get("produced_per_s"),
        "seconds_first_row_to_last_delivery": span,
        "seconds_run_request_to_first_row": (first - t_start) if first else None,
        "lag_ms": percentiles([lag for o in observers for lag in o.lags], 1e3),
        "bytes_per_client": [o.bytes - o.base_bytes for o in observers],
        "bytes_per_row": (lead.bytes - lead.base_bytes) / lead.rows if lead.rows else None,
        "frames_per_client": [o.frames for o in observers],
        "batched_frames_per_client": [o.batched for o in observers],
        "bytes_for_trial": {str(k): v for k, v in lead.sizes_at.items()},
        "bytes_received_by_trial": {str(k): v for k, v in lead.bytes_at.items()},
        "gc_max_pause_ms": (end["data"].get("gc_max_pause") or 0.0) * 1e3 if end else None,
        **gc_from_rows([lead.last_row] if lead.last_row else []),
        "cpu_s": cpu,
        "cpu_us_per_row": {k: v / expected * 1e6 for k, v in cpu.items() if expected},
    }


class TrialsObserver:
    """Counts PsychoPy's ``trials_data`` broadcasts (each the whole dataset so far) for one client."""

    def __init__(self, track_sizes: bool = False) -> None:
        self.track_sizes = track_sizes
        self.messages = self.bytes = self.out_of_order = self.skipped = 0
        self.rows_max = 0
        self.last_rows = 0
        self.lags: list[float] = []
        self.first_time = self.last_receive = None
        self.sizes_at: dict[int, int] = {}
        self.bytes_at: dict[int, int] = {}
        self.end: str | None = None  # trials_data only: nothing before the run counts

    def on_broadcast(self, raw: str, now: float) -> None:
        summary = trials_data_summary(raw)
        if summary is None:
            if raw.startswith(RUN_ENDED):
                self.end = raw[:300]
            return
        rows, t_last = summary
        self.messages += 1
        self.bytes += len(raw)
        if rows <= self.last_rows:
            self.out_of_order += 1
        elif rows > self.last_rows + 1:
            self.skipped += rows - self.last_rows - 1
        self.last_rows = rows
        self.rows_max = max(self.rows_max, rows)
        if t_last is not None:
            self.lags.append(now - t_last)
            if self.first_time is None and rows == 1:
                self.first_time = t_last
        self.last_receive = now
        if self.track_sizes and rows in TRIAL_MARKS:
            self.sizes_at[rows] = len(raw)
            self.bytes_at[rows] = self.bytes


async def psychopy_fanout(stacks: Stacks, n_clients: int, n_rows: int, timeout: float, stall: float) -> dict:
    """The same ``rows_bench`` run through PsychoPy's Session, its data broadcast to N liaison clients.

    PsychoPy's ``sendExperimentData()`` serialises the *whole* dataset
    (``ExperimentHandler.getJSON``: a pandas DataFrame, indented JSON) on the
    experiment's thread and broadcasts it to every connection, every trial. A
    client therefore receives one message per trial whose size grows with the
    run; it has every row once its last message (``n_rows`` rows) arrived.
    Client 0 also starts the run (PsychoPy cannot exclude a connection from broadcasts).
    """
    key = "rows_bench"
    observers = [TrialsObserver(track_sizes=(i == 0)) for i in range(n_clients)]
    conns = [await Psy.open(stacks.psy_url, obs.on_broadcast) for obs in observers]
    for conn in conns:
        conn.start_reader()
    log0 = await conns[0].checked("bench", "logBytes")
    cpu0 = stacks.cpu()
    t_start = time.time()
    try:
        await conns[0].checked("session", "runExperiment",
                               [key, psy_exp_info(key, n_trials=n_rows, flip_every=0), False])
        ended = await wait_for_progress(
            lambda: all(o.rows_max >= n_rows or c.closed for o, c in zip(observers, conns)),
            lambda: sum(o.messages for o in observers), timeout, stall)
        cpu = cpu_delta(cpu0, stacks.cpu())
        # the run ends (and its data are saved) after the last broadcast was queued
        await wait_for_progress(lambda: observers[0].end is not None, lambda: 0, 60, 60)
        record = await conns[0].checked("bench", "record", [key], timeout=60)
        log1 = await conns[0].checked("bench", "logBytes")
    finally:
        for conn in conns:
            await conn.close()
    complete = all(o.rows_max == n_rows for o in observers)
    first = min((o.first_time for o in observers if o.first_time), default=None)
    last_delivery = max((o.last_receive for o in observers if o.last_receive), default=None)
    span = (last_delivery - first) if first and last_delivery else None
    lead = observers[0]
    produced = record.get("rows")
    return {
        "clients": n_clients, "rows_requested": n_rows, "ended": ended, "complete": complete,
        "rows_in_last_message_per_client": [o.rows_max for o in observers],
        "messages_per_client": [o.messages for o in observers],
        "messages_out_of_order": sum(o.out_of_order for o in observers),
        "messages_missing": sum(o.skipped for o in observers),
        "closed_by_server": [c.closed for c in conns if c.closed and c.closed[0] not in (1000, None)],
        "events_per_s": rate(n_rows, span) if complete else None,
        "deliveries_per_s": rate(n_rows * n_clients, span) if complete else None,
        "produced_per_s": rate(produced, record.get("seconds")),
        "seconds_first_row_to_last_delivery": span,
        "seconds_run_request_to_first_row": (first - t_start) if first else None,
        "lag_ms": percentiles([lag for o in observers for lag in o.lags], 1e3),
        "bytes_per_client": [o.bytes for o in observers],
        "bytes_per_row": lead.bytes / lead.rows_max if lead.rows_max else None,
        "bytes_for_trial": {str(k): v for k, v in lead.sizes_at.items()},
        "bytes_received_by_trial": {str(k): v for k, v in lead.bytes_at.items()},
        "session_log_bytes_written": (log1 - log0) if isinstance(log1, int) and isinstance(log0, int) else None,
        **gc_from_record(record),
        "cpu_s": cpu,
        "cpu_us_per_row": {k: v / n_rows * 1e6 for k, v in cpu.items() if n_rows},
    }


# --- 7: frame timing ---------------------------------------------------------------------------------

def paced_info(n_frames: int, frames_per_trial: int, spin_ms: float) -> dict:
    return {"participant": "bench", "n_frames": n_frames, "frames_per_trial": frames_per_trial, "rate": 240.0,
            "spin_ms": spin_ms, "late_ms": 1.0}


class CommandLoad:
    """Fire ``rate`` commands per second on a fixed schedule (not waiting for replies) until stopped."""

    def __init__(self, send: Callable[[int], tuple[asyncio.Future, Any]], per_s: float,
                 names: tuple[str, str] = ("even", "odd")) -> None:
        self.send = send
        self.names = names  # what the even and the odd commands are, for the slowest list
        self.period = 1.0 / per_s
        self.sent = self.ok = self.failed = 0
        self.rtt: list[float] = []
        self.timeline: list[tuple[float, int, float]] = []  # (sent, index, round trip)
        self.started = 0.0
        self._stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self, duration: float) -> None:
        """Send for ``duration`` s (the frame runs stop it before their run ends: the end of a run
        is measured by the runs themselves, and commands sent then all wait for it)."""
        self.task = asyncio.get_running_loop().create_task(self._run(duration))

    async def _run(self, duration: float) -> None:
        next_at = self.started = time.perf_counter()
        until = self.started + duration
        i = 0
        while not self._stop.is_set() and time.perf_counter() < until:
            sent = time.perf_counter()
            future, _ = self.send(i)
            future.add_done_callback(lambda f, t=sent, i=i: self._done(f, t, i))
            self.sent += 1
            i += 1
            next_at += self.period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    def _done(self, future: asyncio.Future, sent: float, index: int) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed += 1
            return
        answer = future.result()
        if answer.get("ok") or "result" in answer:
            self.ok += 1
            rtt = time.perf_counter() - sent
            self.rtt.append(rtt)
            self.timeline.append((sent, index, rtt))
        else:
            self.failed += 1

    async def stop(self) -> dict:
        self._stop.set()
        if self.task is not None:
            await self.task
        await asyncio.sleep(0.2)  # the last replies
        slowest = sorted(self.timeline, key=lambda item: -item[2])[:10]
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed,
                "reply_ms": percentiles(self.rtt, 1e3), "per_s": 1.0 / self.period,
                "slowest": [{"at_s": round(t - self.started, 3), "cmd": self.names[i % 2], "ms": round(r * 1e3, 2)}
                            for t, i, r in slowest]}


class CountingObserver:
    """Counts frames and bytes only: background clients that must keep up, not be measured."""

    def __init__(self) -> None:
        self.frames = self.bytes = 0

    def on_frame(self, raw: str, items: list, now: float) -> None:
        self.frames += 1
        self.bytes += len(raw)

    def on_broadcast(self, raw: str, now: float) -> None:
        self.frames += 1
        self.bytes += len(raw)


async def ours_frames(stacks: Stacks, n_frames: int, loaded: bool, clients: int = 10, per_s: float = 100.0,
                      frames_per_trial: int = 24, spin_ms: float = 1.0) -> dict:
    """``paced_bench`` (240 Hz deadlines) in our worker, idle or with N observers + ``per_s`` commands/s.

    The load: N observer clients receiving every event, and the controller
    sending, on a fixed 100/s schedule, ``annotate`` (applied on the
    experiment's thread at its next frame, then an ``annotation`` event to every
    client) alternating with ``get_exp_info`` (answered by the worker's
    receiver thread), from the moment the first trial's row arrives (the frame
    loop runs). Missed deadlines come from the experiment's own rows.
    """
    key = "paced_bench"
    rows: list[dict] = []
    running = asyncio.Event()  # the frame loop runs: its first trial's row arrived
    finished: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_event(message: dict, now: float) -> None:
        event, data = message["event"], message["data"]
        if data.get("key") != key:
            return
        if event == "data_rows":
            rows.extend(data["rows"])
            running.set()
        elif event in ("run_finished", "run_failed") and not finished.done():
            finished.set_result(message)

    ctl = await Ours.open(stacks.ours_url, stacks.token, "controller", on_event=on_event)
    ctl.start_reader()
    counters = [CountingObserver() for _ in range(clients if loaded else 0)]
    observers = [await Ours.open(stacks.ours_url, stacks.token, "observer", on_frame=c.on_frame) for c in counters]
    for obs in observers:
        obs.start_reader()
    load = CommandLoad(lambda i: ctl.send_request("annotate", {"text": f"bench {i}"}) if i % 2 == 0
                       else ctl.send_request("get_exp_info"), per_s, ("annotate", "get_exp_info"))
    cpu0 = stacks.cpu()
    try:
        await ctl.checked("run", {"key": key, "exp_info": paced_info(n_frames, frames_per_trial, spin_ms)})
        await asyncio.wait_for(running.wait(), 60)
        if loaded:
            load.start(max(0.5, n_frames / 240 - 0.4))
        end = await asyncio.wait_for(finished, n_frames / 240 + 60)
        commands = await load.stop() if loaded else None
    finally:
        cpu = cpu_delta(cpu0, stacks.cpu())
        for conn in [ctl, *observers]:
            await conn.close()
    return frame_summary(
        frames=sum(r.get("frames", 0) for r in rows), missed=sum(r.get("missed", 0) for r in rows),
        worst=max((r.get("worst_late_ms", 0.0) for r in rows), default=None), n_frames=n_frames,
        extra={"loaded": loaded, "clients": len(observers), "commands": commands,
               "outcome": end["data"].get("outcome"),
               "gc_max_pause_ms": (end["data"].get("gc_max_pause") or 0.0) * 1e3,
               **gc_from_rows(rows),
               "timing": timing_digest(end["data"].get("timing")),
               "observer_frames": [c.frames for c in counters], "observer_bytes": [c.bytes for c in counters],
               "cpu_s": cpu})


def timing_digest(report: dict | None) -> dict | None:
    """The run's own timing report (session.timing), reduced to what the bench tables show."""
    if not report:
        return None
    iv = report.get("interval_ms") or {}
    gc = report.get("gc") or {}
    prio = report.get("priority") or {}
    return {"frames": report.get("frames"), "dropped": report.get("dropped"), "refresh_hz": report.get("refresh_hz"),
            "p50_ms": iv.get("p50"), "p99_ms": iv.get("p99"), "max_ms": iv.get("max"),
            "worst": (report.get("worst") or [])[:3], "timing_ok": report.get("timing_ok"),
            "gc_max_in_frames_ms": gc.get("max_in_frames_ms"), "gc_max_at_boundaries_ms": gc.get("max_at_boundaries_ms"),
            "priority": {k: prio.get(k) for k in ("requested", "obtained", "policy", "nice", "cpus", "notes")}}


async def psychopy_frames(stacks: Stacks, n_frames: int, loaded: bool, clients: int = 10, per_s: float = 100.0,
                          frames_per_trial: int = 24, spin_ms: float = 1.0) -> dict:
    """The same paced run in PsychoPy's Session, idle or with N liaison clients + ``per_s`` calls/s.

    The load mirrors ours: N more connections receiving every broadcast (the
    growing dataset each trial), and the controller calling, 100/s,
    ``session.addAnnotation`` alternating with ``session.getCurrentExpInfo``
    (both run on the liaison thread, in the experiment's process).
    """
    key = "paced_bench"
    started = asyncio.Event()  # the frame loop runs: its first trial's data arrived
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_broadcast(raw: str, now: float) -> None:
        if '"trials_data"' in raw[:40]:
            started.set()
        elif raw.startswith(RUN_ENDED) and not done.done():
            done.set_result(raw)

    ctl = await Psy.open(stacks.psy_url, on_broadcast)
    ctl.start_reader()
    counters = [CountingObserver() for _ in range(clients if loaded else 0)]
    observers = [await Psy.open(stacks.psy_url, c.on_broadcast) for c in counters]
    for obs in observers:
        obs.start_reader()
    load = CommandLoad(lambda i: ctl.send_call("session", "addAnnotation", [f"bench {i}"]) if i % 2 == 0
                       else ctl.send_call("session", "getCurrentExpInfo"), per_s,
                       ("addAnnotation", "getCurrentExpInfo"))
    cpu0 = stacks.cpu()
    try:
        await ctl.checked("session", "runExperiment",
                          [key, psy_exp_info(key, **paced_info(n_frames, frames_per_trial, spin_ms)), False])
        await asyncio.wait_for(started.wait(), 60)
        if loaded:
            load.start(max(0.5, n_frames / 240 - 0.4))
        end = await asyncio.wait_for(done, n_frames / 240 + 60)
        commands = await load.stop() if loaded else None
        record = await ctl.checked("bench", "record", [key])
    finally:
        cpu = cpu_delta(cpu0, stacks.cpu())
        for conn in [ctl, *observers]:
            await conn.close()
    return frame_summary(
        frames=record.get("frames", 0), missed=record.get("missed", 0), worst=record.get("worst_late_ms"),
        n_frames=n_frames,
        extra={"loaded": loaded, "clients": len(observers), "commands": commands, "end": end[:120],
               **gc_from_record(record),
               "late_ms": percentiles(record.get("late_ms", [])),
               "observer_frames": [c.frames for c in counters], "observer_bytes": [c.bytes for c in counters],
               "cpu_s": cpu})


def frame_summary(frames: int, missed: int, worst: float | None, n_frames: int, extra: dict) -> dict:
    return {"frames": frames, "frames_requested": n_frames, "missed": missed,
            "missed_pct": 100.0 * missed / frames if frames else None, "worst_late_ms": worst, **extra}
