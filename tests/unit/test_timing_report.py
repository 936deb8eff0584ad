"""The timing report's arithmetic, fed known flip times (the window-level tests are in tests/e2e/test_timing.py)."""

from __future__ import annotations

import math

import pytest

from session import timing
from session.timing import TimingRecorder, verdict


def feed(recorder: TimingRecorder, intervals: list[float], rows: list[int] | None = None) -> None:
    now = 100.0
    row = {"value": 0}
    recorder._row_of = lambda: row["value"]
    recorder._record(now)
    for i, interval in enumerate(intervals):
        if rows is not None:
            row["value"] = rows[i]
        now += interval
        recorder._record(now)


def test_drops_percentiles_and_the_worst_frames_with_their_trial():
    recorder = TimingRecorder(60.0)
    intervals = [1 / 60] * 999 + [0.080]
    feed(recorder, intervals, rows=[i // 100 for i in range(1000)])
    report = recorder.summary()
    assert report["frames"] == 1001 and report["dropped"] == 1
    assert report["worst"][0]["ms"] == pytest.approx(80.0, abs=0.01)
    assert report["worst"][0]["trial"] == 9 and report["worst"][0]["frame"] == 1001
    assert len(report["worst"]) == timing.WORST
    p50 = report["interval_ms"]["p50"]
    assert p50 == pytest.approx(1e3 / 60, rel=0.03)
    assert report["interval_ms"]["max"] == pytest.approx(80.0, abs=0.01)
    assert report["interval_ms"]["sd"] > 0
    assert report["timing_ok"] is False and "trial 9" in report["timing_problem"]


def test_steady_frames_are_ok_and_percentiles_follow_the_distribution():
    recorder = TimingRecorder(100.0)
    intervals = [0.010 + 0.0001 * (i % 10) for i in range(5000)]
    feed(recorder, intervals)
    report = recorder.summary()
    assert report["dropped"] == 0 and report["timing_ok"] is True and report["timing_problem"] is None
    assert report["interval_ms"]["p99"] == pytest.approx(10.9, rel=0.03)
    assert report["interval_ms"]["min"] == pytest.approx(10.0, abs=1e-6)


def test_a_pause_is_not_a_frame():
    recorder = TimingRecorder(60.0)
    feed(recorder, [1 / 60] * 10)
    recorder.skip_interval()
    recorder._record(1e6)  # long after: resumed
    recorder._record(1e6 + 1 / 60)
    assert recorder.summary()["dropped"] == 0 and recorder.intervals == 11


def test_plugin_hooks_are_reported_and_bounded():
    recorder = TimingRecorder(60.0)
    for _ in range(3):
        recorder.note_hook("lsl.push", 0.0002)
    recorder.note_hook("lsl.push", 0.004)
    for i in range(timing.MAX_HOOKS + 10):
        recorder.note_hook(f"hook{i}", 0.0001)
    report = recorder.summary()
    assert report["hooks"]["lsl.push"] == {"calls": 4, "total_ms": pytest.approx(4.6), "max_ms": 4.0, "slow": 1}
    assert len(report["hooks"]) == timing.MAX_HOOKS


def test_memory_is_bounded_whatever_the_run_length():
    recorder = TimingRecorder(240.0)
    feed(recorder, [1 / 240] * 50_000)
    assert len(recorder._bins) == timing._N_BINS and len(recorder._worst) == timing.WORST


def test_verdict_on_gc_pauses_and_empty_runs():
    assert verdict({"frames": 0})["timing_ok"] is True
    bad = verdict({"frames": 100, "dropped": 0, "refresh_hz": 60.0, "interval_ms": {"max": 16.7},
                   "gc": {"max_in_frames_ms": 12.0}})
    assert bad["timing_ok"] is False and "garbage collection" in bad["timing_problem"]


def test_bins_cover_the_range():
    assert timing._bin_of(0.0) == 0 and timing._bin_of(1e9) == timing._N_BINS - 1
    assert math.isclose(timing._bin_value(timing._bin_of(0.01)), 0.01, rel_tol=0.03)


class FakeWindow:
    """Only what attach() needs: an object with a flip method (the real window is tested in e2e)."""

    def __init__(self):
        self.flips = 0

    def flip(self):
        self.flips += 1
        return self.flips


def test_the_module_level_hook_api_reaches_the_running_recorder_only():
    timing.note_hook("between.runs", 0.5)  # no run: nothing to report to, no error
    win = FakeWindow()
    recorder = TimingRecorder(60.0)
    recorder.attach(win)
    assert timing.current() is recorder
    assert win.flip() == 1 and recorder.frames == 1  # the wrapper times and returns the flip's result
    timing.note_hook("lsl.push", 0.002)
    recorder.detach()
    assert timing.current() is None and "flip" not in vars(win)
    timing.note_hook("lsl.push", 0.002)
    assert recorder.summary()["hooks"]["lsl.push"]["calls"] == 1
