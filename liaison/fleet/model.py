"""The live model: one tile per booth, and the alerts a lab must see.

Fed by the booth links (events, state snapshots, heartbeats) on the event
loop; read by the dashboard front, which sends the tiles that changed. The
model is small and bounded: one tile per configured booth, a fixed number of
recent alerts.
"""

from __future__ import annotations

import collections
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_ALERTS = 200
FRAME = 1 / 60  # a pause longer than a frame at 60 Hz may have cost one
SLOW_COMMAND = 0.1  # s: a pause/resume that took longer than this to reach the experiment


@dataclass
class Tile:
    """What the fleet dashboard shows for one booth."""

    name: str
    url: str
    dashboard: str
    role: str
    contact: str = "connecting"  # connecting | connected | no contact
    last_contact: float | None = None
    status: str | None = None
    experiment: str | None = None
    participant: str | None = None
    run_id: str | None = None
    trial_n: int | None = None
    trial_total: int | None = None
    rows: int = 0
    last_row_at: float | None = None
    timing_warnings: int = 0  # collections longer than a frame, commands slow to reach the experiment
    last_outcome: str | None = None
    error: str | None = None
    experiments: list[str] = field(default_factory=list)
    stored_seq: int = 0  # last event of this booth committed to the store
    session_id: str | None = None

    def public(self) -> dict[str, Any]:
        """The tile as JSON-ready data (a copy: the model goes on changing)."""
        # A flat copy: dataclasses.asdict deep-copies every field, 200 tiles five times a second.
        return {**vars(self), "experiments": list(self.experiments)}


@dataclass
class Alert:
    """Something a person should look at: a failed run, a stalled or silent booth."""

    id: int
    time: float
    booth: str
    kind: str  # failed | stalled | silent | gap | refused | store
    message: str


class FleetModel:
    """Tiles by booth name, alerts, and which tiles changed since the last look."""

    def __init__(self, booths, *, silent_after: float = 30.0, stall_after: float = 60.0) -> None:
        self.tiles: dict[str, Tile] = {
            b.name: Tile(name=b.name, url=b.url, dashboard=b.dashboard, role=b.role) for b in booths}
        self.alerts: collections.deque[Alert] = collections.deque(maxlen=MAX_ALERTS)
        self.silent_after = silent_after
        self.stall_after = stall_after
        self.dirty: set[str] = set()
        self.new_alerts: list[Alert] = []
        self._alert_ids = itertools.count(1)
        self._raised: set[tuple[str, str]] = set()  # (booth, kind) of stalled/silent alerts still standing
        self.started = time.time()
        self.updates = 0  # tile changes, for the benchmark's update rate

    # --- changes ----------------------------------------------------------------------------
    def touch(self, name: str) -> Tile:
        """Mark the tile changed (sent to dashboards at the next update) and return it."""
        self.dirty.add(name)
        self.updates += 1
        return self.tiles[name]

    def alert(self, booth: str, kind: str, message: str) -> None:
        """Raise an alert (kept among the last MAX_ALERTS, sent with the next update)."""
        alert = Alert(next(self._alert_ids), time.time(), booth, kind, message)
        self.alerts.append(alert)
        self.new_alerts.append(alert)
        del self.new_alerts[:-MAX_ALERTS]

    def contact(self, name: str, state: str, error: str | None = None) -> None:
        """The link's contact with the booth: ``connected`` (now), ``connecting`` or ``no contact`` (why)."""
        tile = self.tiles[name]
        now = time.time()
        if state == "connected":
            tile.last_contact = now
            self._raised.discard((name, "silent"))
        if tile.contact != state or (error and tile.error != error) or state == "connected":
            tile = self.touch(name)
            tile.contact = state
            if error is not None:
                tile.error = error
            elif state == "connected":
                tile.error = None

    def snapshot(self, name: str, state: dict[str, Any], session_id: str | None) -> None:
        """A booth's welcome: its state as of the snapshot."""
        tile = self.touch(name)
        tile.session_id = session_id
        tile.status = state.get("status")
        running = tile.status in ("starting", "running", "paused", "stopping")
        tile.run_id = state.get("run_id") if running else None
        tile.experiment = state.get("key") if running else tile.experiment
        exp_info = state.get("exp_info") or {}
        if running and "participant" in exp_info:
            tile.participant = str(exp_info["participant"])
        if running:
            tile.rows = int(state.get("rows") or 0)
        tile.experiments = sorted(e.get("key") for e in state.get("experiments") or [] if e.get("key"))

    def event(self, name: str, kind: str, seq: int, when: float, data: dict[str, Any]) -> None:
        """A booth's event after its snapshot: update the tile, raise alerts."""
        tile = self.touch(name)
        tile.last_contact = time.time()
        if kind == "status":
            tile.status = data.get("status")
            if tile.status in ("worker_exited", "unavailable"):
                self.alert(name, "failed", f"the booth's session is {tile.status}")
        elif kind == "run_started":
            tile.run_id = data.get("run_id")
            tile.experiment = data.get("key")
            participant = (data.get("exp_info") or {}).get("participant")
            tile.participant = None if participant is None else str(participant)
            tile.rows, tile.trial_n, tile.trial_total = 0, None, None
            tile.last_row_at = time.time()  # our clock: the booth's may differ
            tile.last_outcome = None
            self._raised.discard((name, "stalled"))
        elif kind == "data_rows":
            tile.rows = max(tile.rows, int(data.get("first_row", 0)) + len(data.get("rows") or ()))
            tile.last_row_at = time.time()
            self._raised.discard((name, "stalled"))
        elif kind in ("run_paused", "run_resumed"):
            if float(data.get("latency") or 0) > SLOW_COMMAND:
                tile.timing_warnings += 1
        elif kind == "run_finished":
            tile.last_outcome = data.get("outcome")
            tile.rows = int(data.get("rows") or tile.rows)
            if float(data.get("gc_max_pause") or 0) > FRAME:
                tile.timing_warnings += 1
        elif kind == "run_failed":
            tile.last_outcome = "failed"
            self.alert(name, "failed", f"run {data.get('run_id')} failed: {data.get('error')}")
        elif kind == "run_recovered":
            tile.last_outcome = "recovered"
            self.alert(name, "failed", f"run {data.get('run_id')} was interrupted; {data.get('rows')} rows "
                                       f"recovered ({data.get('reason')})")
        elif kind == "experiment_added" and data.get("key") and data["key"] not in tile.experiments:
            tile.experiments = sorted([*tile.experiments, data["key"]])

    def trials(self, name: str, run_id: str | None, n: int | None, total: int | None) -> None:
        """Trial n of total for the booth's run ``run_id`` (ignored if that is no longer its run)."""
        tile = self.tiles[name]
        if run_id != tile.run_id or (tile.trial_n, tile.trial_total) == (n, total):
            return
        tile = self.touch(name)
        tile.trial_n, tile.trial_total = n, total

    def stored(self, name: str, seq: int) -> None:
        """The store now holds the booth's events up to ``seq`` (never moves back)."""
        tile = self.tiles[name]
        if seq > tile.stored_seq:
            tile.stored_seq = seq  # not a visible change on its own: no touch

    # --- watchdog -----------------------------------------------------------------------------
    def check(self, now: float | None = None) -> None:
        """Raise "silent" and "stalled" alerts (once each, until the booth recovers)."""
        now = time.time() if now is None else now
        for name, tile in self.tiles.items():
            last = tile.last_contact or self.started
            if now - last > self.silent_after:
                if tile.contact != "no contact":
                    self.touch(name).contact = "no contact"
                if (name, "silent") not in self._raised:
                    self._raised.add((name, "silent"))
                    self.alert(name, "silent", f"no contact for {now - last:.0f} s")
            if tile.status == "running" and tile.last_row_at and now - tile.last_row_at > self.stall_after \
                    and (name, "stalled") not in self._raised:
                self._raised.add((name, "stalled"))
                self.alert(name, "stalled", f"running without a new row for {now - tile.last_row_at:.0f} s")

    # --- reading ----------------------------------------------------------------------------------
    def take_changes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Tiles changed and alerts raised since the last call (then forgotten)."""
        names, self.dirty = self.dirty, set()
        alerts, self.new_alerts = self.new_alerts, []
        return [self.tiles[n].public() for n in sorted(names)], [asdict(a) for a in alerts]

    def everything(self) -> dict[str, Any]:
        """Every tile and the recent alerts: what a dashboard's welcome carries."""
        return {"booths": [t.public() for t in self.tiles.values()], "alerts": [asdict(a) for a in self.alerts]}
