"""Lab Streaming Layer: markers stamped with the experiment's own flips, and rows as JSON.

Enable with ``liaison serve ROOT --plugin lsl`` (needs ``pip install
'liaison-session[lsl]'``). Options: ``name`` (the rig's name, default the
host name), ``source_id`` (default derived from host and data folder, so a
recorder re-finds the stream after a restart), ``data`` (true: also a data
outlet carrying each row as JSON).

The marker outlet lives in the worker (:class:`LslMarkers`, on the
experiment's thread): one string sample per marker, a JSON object whose
``event`` is run_start, run_end, routine_start, routine_end, trial_start,
trial_end, pause, resume, stop, annotation or data. Its timestamp is on
``pylsl.local_clock()``: for starts the flip that showed the first frame, for
ends the last flip (PsychoPy's ``tStopRefresh``), for commands the moment the
experiment applied them. ``run_start`` carries ``clock_zero``: the LSL time at
which the run's globalClock (the times in the data file) read 0.

The data outlet lives in the server (:class:`LslPlugin`): rows are not frame
events, so they are stamped when the server relays them.
"""

from __future__ import annotations

import hashlib
import json
import socket
from typing import Any

from session.plugins import (
    ControlPoint, EnginePlugin, Note, RoutineBoundary, RunBegin, RunEnd, TrialBoundary, Value,
)

from .base import Plugin, SessionInfo

OPTIONS = ("name", "source_id", "data")
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=repr)


def _pylsl():
    try:
        import pylsl
    except ImportError as exc:  # say what to install, not just what is missing
        raise ImportError("the lsl plugin needs pylsl: pip install 'liaison-session[lsl]'") from exc
    return pylsl


def check_options(options: dict[str, Any]) -> None:
    """Raise ValueError naming any unknown or mistyped LSL plugin option."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    for key in ("name", "source_id"):
        if key in options and (not isinstance(options[key], str) or not options[key].strip()):
            raise ValueError(f"option {key} must be non-empty text")
    if "data" in options and not isinstance(options["data"], bool):
        raise ValueError("option data must be true or false")


def rig_name(options: dict[str, Any]) -> str:
    """The rig's name in stream names: the ``name`` option, else the host name."""
    return options.get("name") or socket.gethostname()


def source_id(options: dict[str, Any], data_dir: str, kind: str) -> str:
    """Stable across restarts of the same server: the option, or host + data folder."""
    base = options.get("source_id")
    if not base:
        digest = hashlib.sha1(f"{socket.gethostname()}|{data_dir}".encode()).hexdigest()[:12]
        base = f"liaison-{digest}"
    return f"{base}-{kind}"


def stream_info(pylsl, *, name: str, kind: str, source: str, rig: str, version: str):
    """A one-channel, irregular-rate string stream described as Liaison's."""
    info = pylsl.StreamInfo(name, kind, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source)
    desc = info.desc()
    desc.append_child_value("manufacturer", "Liaison")
    liaison = desc.append_child("liaison")
    liaison.append_child_value("version", version)
    liaison.append_child_value("rig", rig)
    liaison.append_child_value("host", socket.gethostname())
    liaison.append_child_value("note", "each sample is a JSON object naming its run_id; "
                                       "run_start markers also name the experiment")
    channel = desc.append_child("channels").append_child("channel")
    channel.append_child_value("label", "marker" if kind == "Markers" else "row")
    channel.append_child_value("type", kind)
    return info


class _GilHoldingCalls:
    """liblsl's push and clock, called without releasing the GIL (``ctypes.PyDLL``).

    pylsl calls liblsl through ``ctypes.CDLL``, which releases the GIL around
    every call; on the experiment's thread that is a chance for another
    Python thread (the worker's sender, pickling a trial's rows) to take the
    GIL, and the frame then waits for it to give it back: we measured pushes
    of 5 µs taking up to tens of ms at trial boundaries on a loaded machine.
    Both calls are short and never call back into Python, so holding the GIL
    is safe. Falls back to pylsl's own calls if its library is not where we
    expect it.
    """

    def __init__(self, pylsl) -> None:
        import ctypes

        library = ctypes.PyDLL(pylsl.lib.lib._name)
        self.push = library.lsl_push_sample_buftp
        self.push.restype = ctypes.c_int32
        self.push.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint32),
                              ctypes.c_double, ctypes.c_int32]
        self.clock = library.lsl_local_clock
        self.clock.restype = ctypes.c_double
        self.clock.argtypes = []
        self._ctypes = ctypes

    def push_text(self, outlet, text: str, timestamp: float) -> None:
        ctypes = self._ctypes
        data = text.encode("utf-8")
        code = self.push(outlet.obj, (ctypes.c_char_p * 1)(data), (ctypes.c_uint32 * 1)(len(data)),
                         timestamp, 1)
        if code < 0:
            raise RuntimeError(f"liblsl push_sample failed (error {code})")


def _version() -> str:
    from liaison import __version__

    return __version__


class LslMarkers(EnginePlugin):
    """The worker's half: a marker outlet fed on the experiment's thread (see the module docstring)."""

    budget = 0.0005

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        check_options(self.options)
        self.pylsl = _pylsl()
        from psychopy import clock

        self._base_clock = clock.getTime
        try:
            self._calls = _GilHoldingCalls(self.pylsl)
            self._local_clock = self._calls.clock
        except (AttributeError, OSError):  # another pylsl layout: its own (GIL-releasing) calls
            self._calls = None
            self._local_clock = self.pylsl.local_clock
        self.outlet = None
        self.offset = 0.0  # pylsl.local_clock() - PsychoPy's base clock
        self.run: RunBegin | None = None

    # clock ------------------------------------------------------------------------------------------
    def sync(self) -> float:
        """Measure ``local_clock() - base clock`` from the tightest of a few bracketed reads (~5 µs)."""
        local, base = self._local_clock, self._base_clock
        best_width, best = None, self.offset
        for _ in range(5):
            before = base()
            lsl = local()
            after = base()
            width = after - before
            if best_width is None or width < best_width:
                best_width, best = width, lsl - (before + after) / 2
        self.offset = best
        return best

    def push(self, marker: dict[str, Any], at: float) -> None:
        """One marker at base-clock time ``at``, stamped on the LSL clock."""
        outlet = self.outlet
        if outlet is None:
            return
        if self._calls is not None:
            self._calls.push_text(outlet, _JSON.encode(marker), at + self.offset)
        else:
            outlet.push_sample([_JSON.encode(marker)], at + self.offset)

    def _run_fields(self, run_id: str | None) -> dict[str, Any]:
        return {"run_id": run_id} if run_id else {}

    # hooks ---------------------------------------------------------------------------------------------
    def session_started(self, info: dict[str, Any]) -> None:
        """Open the marker outlet (one per session; its source id survives restarts)."""
        pylsl = self.pylsl
        rig = rig_name(self.options)
        self.outlet = pylsl.StreamOutlet(stream_info(
            pylsl, name=f"Liaison {rig} markers", kind="Markers",
            source=source_id(self.options, info.get("data_dir", ""), "markers"), rig=rig, version=_version(),
        ))
        self.sync()

    def session_stopping(self) -> None:
        """Close the marker outlet."""
        self.outlet = None

    def run_started(self, run: RunBegin) -> None:
        """Marker ``run_start`` with the run, experiment and participant."""
        self.sync()
        self.run = run
        self.push({"event": "run_start", "run_id": run.run_id, "experiment": run.key,
                   "participant": run.exp_info.get("participant"), "session": run.exp_info.get("session"),
                   "clock_zero": run.clock_zero + self.offset}, run.time)

    def run_ended(self, run: RunEnd) -> None:
        """Marker ``run_end`` with the outcome and rows."""
        participant = self.run.exp_info.get("participant") if self.run else None
        self.push({"event": "run_end", "run_id": run.run_id, "experiment": run.key, "participant": participant,
                   "outcome": run.outcome, "rows": run.rows}, run.time)
        self.run = None

    def routine_started(self, event: RoutineBoundary) -> None:
        """Marker ``routine_start``, stamped at the routine's first flip."""
        self.push({"event": "routine_start", "run_id": event.run_id, "routine": event.routine}, event.time)

    def routine_ended(self, event: RoutineBoundary) -> None:
        """Marker ``routine_end``."""
        self.push({"event": "routine_end", "run_id": event.run_id, "routine": event.routine}, event.time)

    def trial_started(self, event: TrialBoundary) -> None:
        """Marker ``trial_start`` with the loop, trial number and data row."""
        self.push({"event": "trial_start", "run_id": event.run_id, "loop": event.loop, "n": event.n,
                   "row": event.row}, event.time)

    def trial_ended(self, event: TrialBoundary) -> None:
        """Marker ``trial_end``; re-reads the clock mapping between trials."""
        self.push({"event": "trial_end", "run_id": event.run_id, "loop": event.loop, "n": event.n,
                   "row": event.row}, event.time)
        self.sync()  # between trials: keeps the mapping exact even if the base clock is slewed

    def paused(self, event: ControlPoint) -> None:
        """Marker ``pause``, stamped when the experiment observed it."""
        self.push({"event": "pause", "run_id": event.run_id}, event.time)

    def resumed(self, event: ControlPoint) -> None:
        """Marker ``resume``."""
        self.push({"event": "resume", "run_id": event.run_id}, event.time)

    def stopping(self, event: ControlPoint) -> None:
        """Marker ``stop`` with how the run is ending."""
        self.push({"event": "stop", "run_id": event.run_id, "outcome": event.outcome}, event.time)

    def annotated(self, event: Note) -> None:
        """Marker ``annotation`` with the text."""
        self.push({"event": "annotation", **self._run_fields(event.run_id), "text": event.text}, event.time)

    def data_added(self, event: Value) -> None:
        """Marker ``data`` for a value added by a client."""
        self.push({"event": "data", "run_id": event.run_id, "name": event.name, "value": event.value}, event.time)


class LslPlugin(Plugin):
    """The server's half: validates options, names the engine half, and runs the optional data outlet."""

    engine = "liaison.plugins.lsl:LslMarkers"
    known_options = OPTIONS

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        check_options(self.options)
        self.pylsl = _pylsl()
        self.data_outlet = None

    def session_started(self, info: SessionInfo) -> None:
        """Open the data outlet when the ``data`` option asks for one."""
        if not self.options.get("data"):
            return
        pylsl = self.pylsl
        rig = rig_name(self.options)
        self.data_outlet = pylsl.StreamOutlet(stream_info(
            pylsl, name=f"Liaison {rig} data", kind="LiaisonRows",
            source=source_id(self.options, info.data_dir, "data"), rig=rig, version=info.version,
        ))

    def data_rows(self, event) -> None:
        """Push each row as a JSON string sample (server side, never on the experiment's thread)."""
        outlet = self.data_outlet
        if outlet is None:
            return
        now = self.pylsl.local_clock()
        for index, row in enumerate(event.rows):
            outlet.push_sample([_JSON.encode({"run_id": event.run_id, "experiment": event.key,
                                              "row": event.first_row + index, "data": row})], now)

    def session_stopping(self) -> None:
        """Close the data outlet."""
        self.data_outlet = None
