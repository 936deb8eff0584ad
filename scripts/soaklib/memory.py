"""Memory over the soak: slopes per process after the warm-up, read against the growth the design explains.

Two things grow by design: the server's replay buffer (bounded: it stops
growing once full) and the worker's ExperimentHandler, which keeps every row
for its CSV. What is left of a slope after subtracting those is unexplained.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .peer import Peer
from .stats import MB, fmt, r3, slope_per_minute

REPLAY_ENTRY_OVERHEAD = 150  # bytes per replay-buffer entry besides its text: tuple, int, str header


def expected_growth(peer: Peer | None, rate: float, replay_size: int | None, calibration: dict[str, Any] | None,
                    duration: float) -> dict[str, Any]:
    """Growth the design accounts for, from what was measured, to read the slopes against.

    ``peer`` supplies the event rate and size actually delivered; ``replay_size``
    is the server's buffer length (None when unknown); ``calibration`` the
    measured bytes per row; ``duration`` the soak's length in seconds.
    """
    events_per_s = None
    per_event = None
    if peer is not None and peer.data_events > 1 and peer.data_last_at > peer.data_first_at:
        events_per_s = (peer.data_events - 1) / (peer.data_last_at - peer.data_first_at)
        per_event = peer.data_bytes / peer.data_events + REPLAY_ENTRY_OVERHEAD
    server = {"what": "the replay buffer keeps the last events' JSON text in memory "
                      f"(bounded: {replay_size} events), about {fmt(per_event, '.0f')} bytes per event",
              "mb_per_min": None, "full_after_min": None}
    if events_per_s and per_event:
        server["mb_per_min"] = r3(events_per_s * per_event * 60 / MB)
        if replay_size:
            server["full_after_min"] = r3(replay_size / events_per_s / 60)
            server["cap_mb"] = r3(replay_size * per_event / MB)
            if server["full_after_min"] < duration / 60:
                server["what"] += "; it fills during the soak, after which it stops growing"
    bytes_per_row = (calibration or {}).get("bytes_per_row")
    worker = {"what": "PsychoPy's ExperimentHandler keeps every row for the CSV "
                      f"(measured: {fmt(bytes_per_row, '.0f')} bytes per row)",
              "mb_per_min": r3(rate * 60 * bytes_per_row / MB) if bytes_per_row else None}
    return {"server": server, "worker": worker, "events_per_second": r3(events_per_s)}


def design_curve(label: str, expected: dict[str, Any]) -> Callable[[float], float] | None:
    """MB the design accounts for ``t`` s into the run (the replay buffer stops growing once full)."""
    info = expected.get(label) or {}
    per_second = info.get("mb_per_min") / 60 if info.get("mb_per_min") is not None else None
    if per_second is None:
        return None
    full_at = info["full_after_min"] * 60 if info.get("full_after_min") else math.inf
    return lambda t: per_second * min(t, full_at)


def memory_summary(samples: list[dict[str, Any]], warmup: float, expected: dict[str, Any]) -> dict[str, Any]:
    """Per process: idle, start and end RSS, slopes (all of the steady part and its last third) and the
    share of each slope the design explains; the journal's size and slope; ``expected`` as given.

    Samples taken before ``warmup`` seconds of run do not count.
    """
    run = [s for s in samples if s["phase"] == "run"]
    steady = [s for s in run if s["t"] >= warmup - 1e-6]
    out: dict[str, Any] = {}
    for label in ("server", "worker", "xvfb", "soak"):
        points = [(s["t"], s["memory"][label]["rss_mb"]) for s in steady if s["memory"].get(label)]
        anon = [(s["t"], s["memory"][label]["anon_mb"]) for s in steady
                if s["memory"].get(label) and "anon_mb" in s["memory"][label]]
        idle = next((s["memory"].get(label) for s in samples if s["phase"] == "idle"), None)
        after = next((s["memory"].get(label) for s in samples if s["phase"] == "after"), None)
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
    out["expected"] = expected
    for label in ("server", "worker"):
        points = [(s["t"], s["memory"][label]["rss_mb"]) for s in steady if s["memory"].get(label)]
        windows = {"": points}
        if len(points) >= 9:  # also the last third: a bounded buffer that filled shows as a flat tail
            windows["recent_"] = points[-max(3, len(points) // 3):]
        for prefix, window in windows.items():
            slope = slope_per_minute(window)
            design = design_curve(label, expected)
            expected_slope = slope_per_minute([(t, design(t)) for t, _ in window]) if design else None
            out[label][f"{prefix}slope_mb_per_min"] = r3(slope)
            out[label][f"{prefix}expected_slope_mb_per_min"] = r3(expected_slope)
            out[label][f"{prefix}unexplained_slope_mb_per_min"] = (r3(slope - expected_slope)
                                                                   if None not in (slope, expected_slope) else None)
            if prefix:
                out[label]["recent_from_t"] = window[0][0]
    return out
