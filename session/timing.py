"""Every run reports its own frame timing, in bounded memory, at a budgeted cost per frame.

For the length of a run the window's ``flip`` is wrapped (an instance
attribute over the bound method; removed after the run) so that each flip's
return time is taken with ``time.perf_counter()``. Per frame that costs one
Python call, a clock read, a subtraction, a compare and a histogram count
(about a microsecond); everything else happens only for slow frames or at a
trial boundary:

- frames and dropped frames: an interval longer than ``DROP_FACTOR`` (1.5)
  times the refresh period. The period is the window's nominal frame rate
  (what the lab configured, else what ``getActualFrameRate`` measured when the
  window opened: under Xvfb, which has no vsync, that is the unpaced flip rate);
- interval percentiles from a log-spaced histogram (``BINS_PER_DECADE`` bins a
  decade, 1 µs to 100 s: about 2 % resolution) plus exact min, max and mean;
- the ``WORST`` longest frames with the data row (trial) they ended in and
  their time into the run;
- pauses between frames that plugins report (:meth:`TimingRecorder.note_hook`),
  and the run's GC pauses (from :class:`session.gcguard.GcGuard`).

:meth:`TimingRecorder.summary` is the report (manifest, ``run_timing`` events,
end-of-run events); :func:`verdict` says whether timing was acceptable.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any, Callable

DROP_FACTOR = 1.5  # an interval above this many refresh periods is a dropped frame
BINS_PER_DECADE = 100
LOW, HIGH = 1e-6, 100.0  # histogram range in seconds; outside it goes to the first / last bin
WORST = 10  # worst frames kept per run
REPORT_EVERY = 1.0  # seconds between live reports (at trial boundaries; in frames only when long overdue)
FRAME_REPORT_AFTER = 5.0  # a run with no trial boundaries still reports this often, from a frame
HOOK_SLOW = 1e-3  # a plugin hook longer than this (s) counts as slow
MAX_HOOKS = 64  # distinct hook names tracked per run (memory stays bounded whatever plugins do)
BAD_DROPPED_SHARE = 0.01  # timing is "bad" when more than 1 % of frames dropped...
BAD_WORST_PERIODS = 3.0  # ...or a single frame lasted more than 3 refresh periods

_N_BINS = int(math.log10(HIGH / LOW) * BINS_PER_DECADE) + 1
_current: list = [None]  # the recorder of the run in progress in this process (set by attach)
_LOG_LOW = math.log10(LOW)


def _bin_of(seconds: float) -> int:
    if seconds <= LOW:
        return 0
    index = int((math.log10(seconds) - _LOG_LOW) * BINS_PER_DECADE)
    return index if index < _N_BINS else _N_BINS - 1


def _bin_value(index: int) -> float:
    """Geometric middle of a bin, in seconds."""
    return 10 ** (_LOG_LOW + (index + 0.5) / BINS_PER_DECADE)


class TimingRecorder:
    """Frame timing of one run. ``attach(win)`` at its start, ``detach()`` at its end (experiment's thread).

    ``row_of`` returns the index of the data row in progress (the trial a
    frame belongs to); it is called only for the few worst frames.
    """

    def __init__(self, refresh_hz: float | None, row_of: Callable[[], int] | None = None,
                 measured_hz: float | None = None, on_report: Callable[[dict[str, Any]], None] | None = None,
                 gc_guard: Any = None) -> None:
        self.refresh_hz = float(refresh_hz) if refresh_hz else None
        self.measured_hz = measured_hz
        self.period = 1.0 / self.refresh_hz if self.refresh_hz else None
        self._drop_limit = DROP_FACTOR * self.period if self.period else math.inf
        self._row_of = row_of or (lambda: -1)
        self.on_report = on_report
        self.frames = 0  # flips
        self.intervals = 0
        self.dropped = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.min = math.inf
        self.max = 0.0
        self._bins = [0] * _N_BINS
        self._worst: list[tuple[float, int, int, float]] = []  # min-heap of (interval, frame, row, at)
        self._worst_floor = 0.0  # an interval must exceed this to enter the worst list
        self._last: float | None = None
        self._started = time.perf_counter()
        self._next_report = self._started + REPORT_EVERY
        self._win = None
        self.hooks: dict[str, list[float]] = {}  # name -> [calls, total s, max s, slow calls]
        self.gc: dict[str, Any] = {}
        self.gc_guard = gc_guard  # a session.gcguard.GcGuard: its pauses join the report
        self.priority: dict[str, Any] | None = None  # session.priority.report() of the experiment's thread

    # --- the window ------------------------------------------------------------------
    def attach(self, win) -> None:
        """Time every flip of ``win`` until :meth:`detach`."""
        # Someone else's instance-level wrapper is chained to; otherwise the class's flip is looked up at
        # each call, so a class swapped in later (the plugins' window subclass) still sees every flip.
        wrapper = vars(win).get("flip")
        clock = time.perf_counter
        record = self._record

        if wrapper is not None:
            flip = wrapper

            def timed_flip(*args: Any, **kwargs: Any):
                result = flip(*args, **kwargs)
                record(clock())
                return result
        else:
            flip = win.flip

            def timed_flip(*args: Any, **kwargs: Any):
                result = type(win).flip(win, *args, **kwargs)
                record(clock())
                return result

        timed_flip.__wrapped__ = flip  # type: ignore[attr-defined]
        self._win = win
        win.flip = timed_flip
        self._started = clock()
        _current[0] = self

    def detach(self) -> None:
        """Stop timing flips: the window's own flip is back."""
        if _current[0] is self:
            _current[0] = None
        win, self._win = self._win, None
        if win is not None and "flip" in vars(win):
            wrapped = getattr(win.flip, "__wrapped__", None)
            if wrapped is not None and getattr(wrapped, "__self__", None) is win:
                del win.flip  # back to the class's method
            elif wrapped is not None:
                win.flip = wrapped

    def _record(self, now: float) -> None:
        """One flip returned at ``now`` (frame thread: keep this short)."""
        self.frames += 1
        last, self._last = self._last, now
        if last is None:
            return
        interval = now - last
        self.intervals += 1
        self.total += interval
        self.total_sq += interval * interval
        self._bins[_bin_of(interval)] += 1
        if interval > self.max:
            self.max = interval
        if interval < self.min:
            self.min = interval
        if interval > self._drop_limit:
            self.dropped += 1
        if interval > self._worst_floor:
            self._note_worst(interval, now)
        if now >= self._next_report and now - self._next_report > FRAME_REPORT_AFTER:
            self.report_now(now)

    def _note_worst(self, interval: float, now: float) -> None:
        try:
            row = int(self._row_of())
        except Exception:  # noqa: BLE001 - the trial index is a nicety; timing must go on
            row = -1
        item = (interval, self.frames, row, now - self._started)
        if len(self._worst) < WORST:
            heapq.heappush(self._worst, item)
        else:
            heapq.heappushpop(self._worst, item)
        if len(self._worst) == WORST:
            self._worst_floor = self._worst[0][0]

    def skip_interval(self) -> None:
        """The next interval is not a frame (the experiment paused): start counting afresh."""
        self._last = None

    # --- plugins and the GC guard ----------------------------------------------------
    def note_hook(self, name: str, seconds: float) -> None:
        """A plugin says its per-frame hook ``name`` took ``seconds`` (experiment's thread; cheap).

        Reported per name (calls, total, max, calls over ``HOOK_SLOW``) in the
        run's timing; at most ``MAX_HOOKS`` names are kept.
        """
        entry = self.hooks.get(name)
        if entry is None:
            if len(self.hooks) >= MAX_HOOKS:
                return
            entry = self.hooks[str(name)[:100]] = [0, 0.0, 0.0, 0]
        entry[0] += 1
        entry[1] += seconds
        if seconds > entry[2]:
            entry[2] = seconds
        if seconds > HOOK_SLOW:
            entry[3] += 1

    def set_gc(self, **values: Any) -> None:
        """Merge the GC guard's figures into the report."""
        self.gc.update(values)

    # --- reports ------------------------------------------------------------------------
    def at_trial_boundary(self) -> None:
        """Publish a live report if one is due (experiment's thread, between trials)."""
        now = time.perf_counter()
        if now >= self._next_report:
            self.report_now(now)

    def report_now(self, now: float | None = None) -> None:
        """Publish a live timing report now (errors in the callback never end the run)."""
        self._next_report = (now or time.perf_counter()) + REPORT_EVERY
        if self.on_report is not None:
            try:
                self.on_report(self.summary())
            except Exception:  # noqa: BLE001 - a failed report must not end the run
                pass

    def jitter(self) -> float | None:
        """Standard deviation of the intervals, in seconds."""
        if self.intervals < 2:
            return None
        mean = self.total / self.intervals
        return math.sqrt(max(0.0, self.total_sq / self.intervals - mean * mean))

    def percentile(self, q: float) -> float | None:
        """Approximate ``q``-th percentile (0..100) of the intervals, in seconds (exact at 0 and 100)."""
        if not self.intervals:
            return None
        if q <= 0:
            return self.min
        if q >= 100:
            return self.max
        wanted = q / 100 * self.intervals
        seen = 0
        for index, count in enumerate(self._bins):
            seen += count
            if seen >= wanted:
                return min(max(_bin_value(index), self.min), self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        """The run's timing report so far (JSON-ready; times in milliseconds)."""
        ms = lambda s: None if s is None else round(s * 1e3, 4)  # noqa: E731
        worst = sorted(self._worst, reverse=True)
        report: dict[str, Any] = {
            "frames": self.frames,
            "refresh_hz": self.refresh_hz,
            "measured_refresh_hz": self.measured_hz,
            "drop_threshold_ms": ms(self._drop_limit) if self.period else None,
            "dropped": self.dropped,
            "interval_ms": {
                "mean": ms(self.total / self.intervals) if self.intervals else None,
                "sd": ms(self.jitter()),
                "min": ms(self.min) if self.intervals else None,
                "p50": ms(self.percentile(50)), "p95": ms(self.percentile(95)), "p99": ms(self.percentile(99)),
                "p999": ms(self.percentile(99.9)), "max": ms(self.max) if self.intervals else None,
            },
            "worst": [{"ms": ms(interval), "frame": frame, "trial": row, "at_s": round(at, 4)}
                      for interval, frame, row, at in worst],
            "hooks": {name: {"calls": calls, "total_ms": ms(total), "max_ms": ms(longest), "slow": slow}
                      for name, (calls, total, longest, slow) in self.hooks.items()},
            "gc": {**(self.gc_guard.describe() if self.gc_guard is not None else {}), **self.gc},
            "priority": self.priority,
        }
        report.update(verdict(report))
        return report


def current() -> TimingRecorder | None:
    """The timing recorder of the run in progress in this process, or None between runs."""
    return _current[0]


def note_hook(name: str, seconds: float) -> None:
    """For plugins: report that per-frame hook ``name`` took ``seconds`` (experiment's thread).

    Goes into the running run's timing report under ``hooks``; a no-op
    between runs. See :meth:`TimingRecorder.note_hook`.
    """
    recorder = _current[0]
    if recorder is not None:
        recorder.note_hook(name, seconds)


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """``{"timing_ok": bool, "timing_problem": str | None}`` for a timing summary."""
    frames, dropped = report.get("frames") or 0, report.get("dropped") or 0
    refresh = report.get("refresh_hz")
    worst = (report.get("interval_ms") or {}).get("max")
    problems = []
    if frames and dropped > BAD_DROPPED_SHARE * frames:
        problems.append(f"{dropped} of {frames} frames dropped")
    if refresh and worst is not None and worst > BAD_WORST_PERIODS * 1e3 / refresh:
        top = (report.get("worst") or [{}])[0]
        where = f" (trial {top['trial']}, frame {top['frame']})" if top.get("trial", -1) >= 0 else ""
        problems.append(f"a frame lasted {worst:.1f} ms, {worst * refresh / 1e3:.1f} refresh periods{where}")
    gc_max = (report.get("gc") or {}).get("max_in_frames_ms")
    if gc_max is not None and refresh and gc_max > 0.5 * 1e3 / refresh:
        problems.append(f"a garbage collection paused frames for {gc_max:.1f} ms")
    return {"timing_ok": not problems, "timing_problem": "; ".join(problems) or None}


def short(report: dict[str, Any] | None) -> str:
    """One line for humans: ``2400 frames, 0 dropped, p99 4.2 ms, worst 4.3 ms``."""
    if not report:
        return "-"
    iv = report.get("interval_ms") or {}
    p99, worst = iv.get("p99"), iv.get("max")
    text = f"{report.get('frames', 0)} frames, {report.get('dropped', 0)} dropped"
    if p99 is not None:
        text += f", p99 {p99:.1f} ms, worst {worst:.1f} ms"
    return text


def flip_test(win, frames: int, measured_hz: float | None = None) -> dict[str, Any]:
    """Flip ``win`` ``frames`` times drawing a small square (a rig check; main thread, between runs).

    Returns the timing report of those flips plus ``refresh_hz`` measured
    again now (``getActualFrameRate``) and ``jitter_ms`` (SD of intervals).
    """
    from psychopy import visual

    nominal = getattr(win, "_monitorFrameRate", None)
    measured = win.getActualFrameRate(nIdentical=10, nMaxFrames=120, nWarmUpFrames=10) or measured_hz
    recorder = TimingRecorder(nominal or measured, measured_hz=measured)
    square = visual.Rect(win, size=(0.1, 0.1), units="height", fillColor="white", lineColor=None)
    recorder.attach(win)
    try:
        for i in range(frames):
            square.pos = (0.3 * math.sin(i / 20), 0)
            square.draw()
            win.flip()
    finally:
        recorder.detach()
        win.flip()
    report = recorder.summary()
    report["jitter_ms"] = report["interval_ms"]["sd"]
    report["requested_frames"] = frames
    return report
