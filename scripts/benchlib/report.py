"""Turn the measures' dicts into the printed tables, the goal verdicts and machine info.

Every table puts the stacks side by side; ratios are ours/PsychoPy and
ours/floor of the same statistic. A measure that failed or does not exist in
a stack shows ``n/a`` (the JSON says why).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

STATS = ("p50", "p90", "p99", "max")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int, float)):
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, bool) or isinstance(b, bool):
        return ""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "n/a"
    return f"x{a / b:.2f}"


def get(data: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def table(title: str, header: list[str], rows: list[list[str]], notes: list[str] = ()) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    out = [f"\n== {title} ==", line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out += [f"   {n}" for n in notes]
    return "\n".join(out)


def stat_rows(columns: list[dict | None], ratios: list[tuple[int, int]], scale: float = 1.0) -> list[list[str]]:
    """One row per statistic: each column's value, then the requested ratios (a/b)."""
    rows = []
    for stat in STATS:
        values = [get(c, stat) for c in columns]
        values = [v * scale if isinstance(v, (int, float)) else v for v in values]
        rows.append([stat] + [fmt(v, 2 if scale != 1.0 or (v or 0) < 10 else 1) for v in values]
                    + [ratio(values[a], values[b]) for a, b in ratios])
    rows.append(["n"] + [fmt(get(c, "n")) for c in columns] + ["" for _ in ratios])
    return rows


# --- the tables ------------------------------------------------------------------------------------

def render(r: dict) -> str:
    parts = [round_trip_table(r), main_thread_table(r), pause_table(r), fanout_table(r), gc_table(r),
             bytes_table(r), frames_table(r), noise_table(r), goals_table(r)]
    return "\n".join(p for p in parts if p)


DISTURBED_CORES = 0.15  # as benchlib.noise.QUIET_CORES


DISTURBED_STEAL = 0.05  # cores' worth of time the hypervisor took from this VM (steal)


def disturbed(result: Any) -> bool:
    """Other processes used a noticeable share of the 2 cores, or the hypervisor took them, during this measure."""
    foreign, steal, wall = (get(result, "noise", k) for k in ("foreign_cores", "steal_s", "wall_s"))
    return bool((foreign is not None and foreign >= DISTURBED_CORES)
                or (steal is not None and wall and steal / wall >= DISTURBED_STEAL))


def noise_table(r: dict) -> str:
    rows = []
    for name, result in r.items():
        n = get(result, "noise")
        if not isinstance(n, dict):
            continue
        rows.append([name, fmt(n.get("wall_s"), 1), fmt(n.get("own_cpu_s"), 2), fmt(n.get("foreign_cpu_s"), 2),
                     fmt(n.get("foreign_cores"), 2), fmt(n.get("steal_s"), 2), fmt(n.get("waited_s"), 1),
                     "DISTURBED" if disturbed(result) else "", get(result, "error") or ""])
    return table("Machine noise per measure (CPU used by processes outside the bench, e.g. other developers' runs)",
                 ["measure", "wall s", "bench CPU s", "foreign CPU s", "foreign cores", "steal s", "waited s",
                  "flag", "error"], rows,
                 ["foreign = system busy CPU - the bench's own process tree (clients, servers, workers, Xvfb). "
                  f"'DISTURBED' when >= {DISTURBED_CORES} cores, or steal (vCPU time the hypervisor took) >= "
                  f"{DISTURBED_STEAL} cores: do not trust that measure's tails."])


def round_trip_table(r: dict) -> str:
    rt = r.get("round_trips") or {}
    cols = [rt.get("ours_ping"), rt.get("psychopy_pingPong"), rt.get("floor_echo")]
    return table("1. Round trip of a cheap request (us, sequential, interleaved rounds)",
                 ["stat", "ours ping", "PsychoPy pingPong", "floor echo", "ours/PsychoPy", "ours/floor"],
                 stat_rows(cols, [(0, 1), (0, 2)]),
                 ["ours ping: answered by the server process; PsychoPy pingPong: a no-op on its liaison thread "
                  "(which logs every message to the session log, flushed, and to stderr at DEBUG).",
                  "floor: our ping request text echoed by a bare websockets server. Each server in its own "
                  "process, clients in the bench process."])


def main_thread_table(r: dict) -> str:
    rt = r.get("round_trips") or {}
    queued = get(r, "psychopy_queued", "executed_ms")
    ours_probe = get(r, "ours_pause", "main_thread_command_during_run_ms")
    floor = rt.get("floor_echo")
    to_ms = lambda s: {k: (v / 1e3 if k in STATS + ("mean",) else v) for k, v in s.items()} if s else None  # noqa: E731
    cols = [to_ms(rt.get("ours_get_exp_info")), ours_probe, queued, to_ms(rt.get("psychopy_getCurrentExpInfo")),
            to_ms(floor)]
    rows = stat_rows(cols, [(0, 2), (0, 4), (1, 2)])
    return table("2. Command to the experiment's process / main thread (ms)",
                 ["stat", "ours get_exp_info", "ours add_data (run)", "PsychoPy queueTask",
                  "PsychoPy getCurrentExpInfo", "floor echo", "get_exp_info/queueTask", "get_exp_info/floor",
                  "add_data/queueTask"], rows,
                 ["ours get_exp_info (idle): server -> pipe -> worker process (its receiver thread) -> back.",
                  "ours add_data during a run: executed on the experiment's main thread at its next status "
                  "read (one frame of pause_bench).",
                  "PsychoPy queueTask('session.getTime'): runs on the main thread at the SessionQueue's next "
                  "0.1 s poll, result broadcast; random 0-100 ms phase. Not serviced at all during a run.",
                  "PsychoPy getCurrentExpInfo: a Session method run on the liaison thread (not the main thread)."])


def pause_table(r: dict) -> str:
    ours, psy = r.get("ours_pause") or {}, r.get("psychopy_pause") or {}
    cols = [ours.get("pause_to_observed_ms"), psy.get("pause_to_observed_ms"),
            ours.get("pause_to_observed_by_experiment_ms"), ours.get("worker_queue_to_applied_ms")]
    rows = stat_rows(cols, [(0, 1)])
    rows.append(["frame period (median)"] + [fmt(ours.get("frame_period_ms"), 3),
                                             fmt(psy.get("frame_period_ms"), 3), "", "", ""])
    return table("3. Pause latency: client sends pause -> running experiment observes PAUSED (ms)",
                 ["stat", "ours (event time)", "PsychoPy (experiment)", "ours (experiment)", "ours in-worker",
                  "ours/PsychoPy"], rows,
                 [f"pause_bench (frames_demo's loop: status check, draw, flip; {ours.get('frames_per_trial')} "
                  "frames/trial, unpaced: Xvfb has no vsync, so a frame is one draw+flip).",
                  "ours (event time): run_paused.time - send time; ours (experiment): the time the experiment "
                  "itself recorded; in-worker: queued in the worker -> applied.",
                  f"pause reply round trip p50: ours {fmt(get(ours, 'pause_reply_round_trip_ms', 'p50'), 2)} ms, "
                  f"PsychoPy {fmt(get(psy, 'pause_reply_round_trip_ms', 'p50'), 2)} ms; PsychoPy pauses not "
                  f"observed within 5 s: {fmt(psy.get('unobserved'))}."])


def fanout_table(r: dict) -> str:
    names = [("ours_fanout_1", "ours 1"), ("psychopy_fanout_1", "PsychoPy 1"), ("ours_fanout_10", "ours 10"),
             ("psychopy_fanout_10", "PsychoPy 10"), ("ours_fanout_10_paced", "ours 10 paced")]
    cols = [r.get(k) or {} for k, _ in names]
    metrics = [
        ("rows in run", lambda c: c.get("rows_in_run", c.get("rows_requested"))),
        ("complete (every row to every client)", lambda c: c.get("complete")),
        ("rows produced/s (experiment)", lambda c: c.get("produced_per_s")),
        ("events/s (each to all clients)", lambda c: c.get("events_per_s")),
        ("deliveries/s", lambda c: c.get("deliveries_per_s")),
        ("lost rows (sum over clients)", lambda c: c.get("lost")),
        ("duplicates / out-of-order msgs", lambda c: c.get("duplicates", c.get("messages_out_of_order"))),
        ("lag p50 ms", lambda c: get(c, "lag_ms", "p50")),
        ("lag p99 ms", lambda c: get(c, "lag_ms", "p99")),
        ("lag max ms", lambda c: get(c, "lag_ms", "max")),
        ("MB received per client", lambda c: (max(c["bytes_per_client"]) / 1e6) if c.get("bytes_per_client") else None),
        ("closed by server", lambda c: len(c.get("closed_by_server") or []) if c else None),
        ("first row -> last delivery s", lambda c: c.get("seconds_first_row_to_last_delivery")),
        ("CPU us/row: server process", lambda c: _cpu_row(c, "server")),
        ("CPU us/row: worker process", lambda c: _cpu_row(c, "worker")),
        ("CPU us/row: bench clients", lambda c: _cpu_row(c, "clients")),
    ]
    rows = [[label] + [fmt(f(c) if c else None, 2) for c in cols]
            + [ratio(f(cols[0]) if cols[0] else None, f(cols[1]) if cols[1] else None),
               ratio(f(cols[2]) if cols[2] else None, f(cols[3]) if cols[3] else None)]
            for label, f in metrics]
    return table("4. Event fan-out of a real run's rows (rows_bench: 1 row + sendExperimentData per trial, no flip)",
                 ["metric"] + [n for _, n in names] + ["ours/Psy (1)", "ours/Psy (10)"], rows,
                 ["ours: data_rows events (incremental); lag = receive - event time. PsychoPy: one trials_data "
                  "message per trial holding the whole dataset; lag = receive - t_row of its last row.",
                  "PsychoPy runs fewer rows (its per-trial cost grows with the run); see rows in run. Its lost "
                  "rows are n/a: every message carries the whole dataset, so a client is complete when its last "
                  "message holds every row (checked), and missing/out-of-order messages are counted instead.",
                  "CPU: per row over the whole measure, all on these 2 cores (the clients too); PsychoPy's "
                  "'server' is its single process (experiment + liaison).",
                  "ours 10 paced: the same run paced by the experiment to the goal's rate "
                  f"({(r.get('ours_fanout_10_paced') or {}).get('paced_rows_per_s')} rows/s); the unpaced runs "
                  "produce as fast as the worker can, on the same 2 cores as the clients."])


def _cpu_row(c: dict, label: str) -> float | None:
    """CPU microseconds per row of one process kind, during the fan-out run (delivery + end of run)."""
    for key, value in (c.get("cpu_us_per_row") or {}).items():
        if key.endswith("." + label) and not key.startswith("floor"):
            if label == "server" and key.startswith(("ours", "psychopy")) and value == 0.0:
                continue  # the suspended other stack
            return value
    return None


def gc_table(r: dict) -> str:
    ours_runs = {k: r.get(k) for k in ("ours_pause", "ours_fanout_1", "ours_fanout_10", "ours_frames_idle",
                                        "ours_frames_loaded")}
    psy_runs = {k: r.get(k) for k in ("psychopy_pause", "psychopy_fanout_1", "psychopy_fanout_10",
                                       "psychopy_frames_idle", "psychopy_frames_loaded")}
    rows = []
    for (ok, o), p in zip(ours_runs.items(), psy_runs.values()):
        label = ok.replace("ours_", "")
        rows.append([label, fmt(get(o, "gc_max_pause_ms"), 3), fmt(get(o, "gc_max_ms_by_experiment"), 3),
                     fmt(get(o, "gc_max_generation")), fmt(get(p, "gc_max_ms_by_experiment"), 3),
                     fmt(get(p, "gc_max_generation"))])
    return table("5. Longest garbage-collection pause in the experiment's process during a run (ms)",
                 ["run", "ours (run_finished)", "ours (experiment)", "gen", "PsychoPy (experiment)", "gen"],
                 rows, ["experiment = its own gc.callbacks timing during run(); gen = generation of that "
                        "collection (2 = full).",
                        "ours runs under its GC guard (freeze + no full collections); PsychoPy's Session has none."])


def bytes_table(r: dict) -> str:
    ours, psy = r.get("ours_fanout_1") or {}, r.get("psychopy_fanout_1") or {}
    rows = []
    for mark in ("10", "100", "1000"):
        o, p = get(ours, "bytes_for_trial", mark), get(psy, "bytes_for_trial", mark)
        oc, pc = get(ours, "bytes_received_by_trial", mark), get(psy, "bytes_received_by_trial", mark)
        rows.append([f"trial {mark}", fmt(o, 0), fmt(p, 0), ratio(o, p), fmt(oc, 0), fmt(pc, 0), ratio(oc, pc)])
    rows.append(["per row, whole run", fmt(ours.get("bytes_per_row"), 0), fmt(psy.get("bytes_per_row"), 0),
                 ratio(ours.get("bytes_per_row"), psy.get("bytes_per_row")), "", "", ""])
    log = psy.get("session_log_bytes_written")
    return table("6. Bytes sent to one client per trial as the run grows",
                 ["trial", "ours msg", "PsychoPy msg", "ours/Psy", "ours total so far", "PsychoPy total so far",
                  "ours/Psy"], rows,
                 ["ours: the data_rows event carrying that trial's row (batched frames split evenly); "
                  "PsychoPy: the trials_data message sent after that trial (the whole dataset).",
                  "total so far: bytes received since the run was requested (ours includes its status and "
                  "run_started events; PsychoPy counts its trials_data messages).",
                  f"PsychoPy's liaison also wrote {fmt(log, 0)} bytes to its session log during that 1-client run."])


def frames_table(r: dict) -> str:
    cols = [("ours_frames_idle", "ours idle"), ("ours_frames_loaded", "ours loaded"),
            ("psychopy_frames_idle", "PsychoPy idle"), ("psychopy_frames_loaded", "PsychoPy loaded")]
    data = [r.get(k) or {} for k, _ in cols]
    metrics = [("frames", "frames"), ("missed deadlines", "missed"), ("missed %", "missed_pct"),
               ("worst lateness ms", "worst_late_ms")]
    rows = [[label] + [fmt(d.get(key), 2) for d in data] for label, key in metrics]
    rows.append(["commands ok/sent"] + [
        f"{get(d, 'commands', 'ok')}/{get(d, 'commands', 'sent')}" if d.get("commands") else "-" for d in data])
    rows.append(["command reply p99 ms"] + [fmt(get(d, "commands", "reply_ms", "p99"), 2) for d in data])
    rows.append(["GC max in run ms (experiment)"] + [fmt(d.get("gc_max_ms_by_experiment"), 3) for d in data])
    rows.append(["own report: dropped / p99 / max ms"] + [
        f"{get(d, 'timing', 'dropped')} / {fmt(get(d, 'timing', 'p99_ms'), 2)} / {fmt(get(d, 'timing', 'max_ms'), 2)}"
        if d.get("timing") else "-" for d in data])
    rows.append(["priority obtained"] + [
        f"{get(d, 'timing', 'priority', 'obtained')} ({get(d, 'timing', 'priority', 'policy')}, nice "
        f"{get(d, 'timing', 'priority', 'nice')}, cpus {get(d, 'timing', 'priority', 'cpus')})"
        if get(d, "timing", "priority") else "-" for d in data])
    extra_ours = _extra_missed(data[0], data[1])
    extra_psy = _extra_missed(data[2], data[3])
    return table("7. Frame timing: 240 Hz deadlines on the experiment's main thread (missed = > deadline + 1 ms)",
                 ["metric"] + [n for _, n in cols], rows,
                 [f"extra missed under load: ours {fmt(extra_ours)}, PsychoPy {fmt(extra_psy)}.",
                  "load = 10 clients receiving every event + 100 commands/s until 0.4 s before the run ends (ours: annotate / get_exp_info; "
                  "PsychoPy: session.addAnnotation / session.getCurrentExpInfo).",
                  "pacing: sleep to 1 ms before each deadline (GIL released, like a blocking vsync swap), then "
                  "busy-wait; each frame draws a rect and flips (Xvfb, no vsync).",
                  "own report: the run's timing report (session.timing) from its run_finished event: flip "
                  "intervals against the window's 240 Hz (drop = > 1.5 periods). PsychoPy runs at normal priority."])


def _extra_missed(idle: dict, loaded: dict) -> int | None:
    if idle.get("missed") is None or loaded.get("missed") is None:
        return None
    return loaded["missed"] - idle["missed"]


# --- goals ----------------------------------------------------------------------------------------

GOAL_MEASURES = {
    "queued command p50 <= 3x floor": ("round_trips",),
    "queued command p99 <= 2 ms": ("round_trips",),
    "pause p99 <= 1 frame + 1 ms": ("ours_pause",),
    "pause max <= 1 frame + 1 ms": ("ours_pause",),
    ">= 20k events/s to each of 10 clients, zero loss, p99 lag < 50 ms": ("ours_fanout_10_paced",),
    "zero extra missed frames under load": ("ours_frames_idle", "ours_frames_loaded"),
    "worst lateness under load <= 2 ms": ("ours_frames_loaded",),
    "no GC pause over 1 ms during a run": ("ours_pause", "ours_fanout_1", "ours_fanout_10", "ours_frames_idle",
                                           "ours_frames_loaded"),
}


def goals(r: dict) -> list[dict]:
    """The headline goals, judged on ours (PsychoPy's value alongside); flags goals measured while disturbed."""
    out = _goals(r)
    for g in out:
        g["disturbed"] = any(disturbed(r.get(name)) for name in GOAL_MEASURES.get(g["goal"], ()))
    return out


def _goals(r: dict) -> list[dict]:
    out = []
    rt = r.get("round_trips") or {}
    floor_p50 = get(rt, "floor_echo", "p50")
    g = get(rt, "ours_get_exp_info")
    ratio_p50 = (g["p50"] / floor_p50) if g and floor_p50 else None
    out.append({"goal": "queued command p50 <= 3x floor", "value": f"x{ratio_p50:.2f}" if ratio_p50 else None,
                "pass": ratio_p50 is not None and ratio_p50 <= 3.0, "psychopy": _psy_queued_ratio(r, floor_p50)})
    p99 = get(g, "p99")
    out.append({"goal": "queued command p99 <= 2 ms", "value": f"{p99 / 1e3:.3f} ms" if p99 else None,
                "pass": p99 is not None and p99 <= 2000,
                "psychopy": f"{get(r, 'psychopy_queued', 'executed_ms', 'p99'):.1f} ms"
                if get(r, "psychopy_queued", "executed_ms", "p99") else None})
    for label, stat in (("pause p99 <= 1 frame + 1 ms", "p99"), ("pause max <= 1 frame + 1 ms", "max")):
        ours, psy = r.get("ours_pause") or {}, r.get("psychopy_pause") or {}
        value = get(ours, "pause_to_observed_ms", stat)
        limit = (ours.get("frame_period_ms") or 0) + 1.0 if ours.get("frame_period_ms") else None
        pv, plimit = get(psy, "pause_to_observed_ms", stat), (psy.get("frame_period_ms") or 0) + 1.0
        out.append({"goal": label, "value": f"{value:.2f} ms (limit {limit:.2f})" if value and limit else None,
                    "pass": value is not None and limit is not None and value <= limit,
                    "psychopy": f"{pv:.2f} ms (limit {plimit:.2f})" if pv else None})
    fan = r.get("ours_fanout_10_paced") or r.get("ours_fanout_10") or {}
    eps, lag = fan.get("events_per_s"), get(fan, "lag_ms", "p99")
    ok = bool(fan.get("complete")) and eps is not None and eps >= 20_000 and lag is not None and lag < 50
    pf = r.get("psychopy_fanout_10") or {}
    out.append({"goal": ">= 20k events/s to each of 10 clients, zero loss, p99 lag < 50 ms",
                "value": f"{fmt(eps)} ev/s (paced at {fmt(fan.get('paced_rows_per_s'))}), "
                         f"complete={fan.get('complete')}, lost={fan.get('lost')}, p99 lag {fmt(lag, 1)} ms",
                "pass": ok,
                "psychopy": f"{fmt(pf.get('events_per_s'))} rows/s, p99 lag {fmt(get(pf, 'lag_ms', 'p99'), 1)} ms"
                if pf else None})
    extra = _extra_missed(r.get("ours_frames_idle") or {}, r.get("ours_frames_loaded") or {})
    out.append({"goal": "zero extra missed frames under load", "value": fmt(extra), "pass": extra is not None and extra <= 0,
                "psychopy": fmt(_extra_missed(r.get("psychopy_frames_idle") or {},
                                              r.get("psychopy_frames_loaded") or {}))})
    worst_loaded = get(r, "ours_frames_loaded", "worst_late_ms")
    out.append({"goal": "worst lateness under load <= 2 ms",
                "value": f"{worst_loaded:.2f} ms" if worst_loaded is not None else None,
                "pass": worst_loaded is not None and worst_loaded <= 2.0,
                "psychopy": f"{get(r, 'psychopy_frames_loaded', 'worst_late_ms'):.2f} ms"
                if get(r, "psychopy_frames_loaded", "worst_late_ms") is not None else None})
    ours_gc = [get(r, k, "gc_max_pause_ms") for k in ("ours_pause", "ours_fanout_1", "ours_fanout_10",
                                                        "ours_frames_idle", "ours_frames_loaded")]
    ours_gc += [get(r, k, "gc_max_ms_by_experiment") for k in ("ours_pause", "ours_fanout_1", "ours_fanout_10",
                                                                 "ours_frames_idle", "ours_frames_loaded")]
    ours_gc = [v for v in ours_gc if isinstance(v, (int, float))]
    psy_gc = [get(r, k, "gc_max_ms_by_experiment") for k in ("psychopy_pause", "psychopy_fanout_1",
                                                               "psychopy_fanout_10", "psychopy_frames_idle",
                                                               "psychopy_frames_loaded")]
    psy_gc = [v for v in psy_gc if isinstance(v, (int, float))]
    worst = max(ours_gc) if ours_gc else None
    out.append({"goal": "no GC pause over 1 ms during a run", "value": f"{worst:.3f} ms" if worst is not None else None,
                "pass": worst is not None and worst <= 1.0,
                "psychopy": f"{max(psy_gc):.3f} ms" if psy_gc else None})
    return out


def _psy_queued_ratio(r: dict, floor_p50: float | None) -> str | None:
    p50 = get(r, "psychopy_queued", "executed_ms", "p50")
    return f"x{p50 * 1e3 / floor_p50:.0f}" if p50 and floor_p50 else None


def goals_table(r: dict) -> str:
    rows = [[g["goal"], fmt(g["value"]), ("PASS" if g["pass"] else "FAIL") + (" (disturbed)" if g.get("disturbed")
                                                                              else ""), fmt(g.get("psychopy"))]
            for g in r.get("goals", [])]
    return table("Headline goals (judged on ours)", ["goal", "ours", "verdict", "PsychoPy (same measure)"], rows)


# --- machine ---------------------------------------------------------------------------------------

def machine_info(project: Path) -> dict:
    import psutil
    import websockets

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "websockets": websockets.__version__,
        "display": os.environ.get("DISPLAY"),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                                  if line.startswith("model name")), None)
    except OSError:
        pass
    for module in ("psychopy", "pydantic", "pyglet", "numpy", "pandas", "ujson"):
        try:
            imported = __import__(module)
            info[module] = getattr(imported, "__version__", None) or getattr(imported, "version", None)
        except Exception:  # noqa: BLE001
            info[module] = None
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
        info["git_modified_files"] = subprocess.run(  # tracked files changed since that commit
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=project, capture_output=True, text=True,
            timeout=10).stdout.split("\n")[:50]
        info["git_modified_files"] = [line.strip() for line in info["git_modified_files"] if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    return info
