"""The fleet service: booth links, the store writer, the live model and the dashboard's WebSocket.

The dashboard speaks a small protocol of its own on the fleet's port::

    server: {"type": "hello", "service": "liaison-fleet", "auth": "token"}
    client: {"type": "auth", "token": "...", "role": "controller" | "observer"}   (role optional)
            (anything else, or a wrong token: closed, 4001)
    server: {"type": "welcome", "role": "controller" | "observer", "booths": [tile...], "alerts": [...]}
    server: {"type": "update", "booths": [changed tiles], "alerts": [new alerts]}   (at most 5 per second)
    client: {"type": "request", "id": 1, "cmd": "start", "args": {"key": "rt_demo",
             "booths": [{"name": "booth-1", "participant": "p01"}, ...], "exp_info": {...}}}
    client: {"type": "request", "id": 2, "cmd": "pause" | "resume" | "stop", "args": {"booths": ["booth-1"]}}
    server: {"type": "reply", "id": 1, "ok": true, "result": {"booth-1": {"ok": true, "result": ...}, ...}}
            {"type": "reply", "id": 1, "ok": false, "error": {"code": "invalid_args", "message": "..."}}

A start or stop goes to every named booth at once; each booth's answer (or
typed error) is reported separately, so one unreachable booth never blocks
the others.

Two tokens, as on a booth: the fleet's ``token`` controls, its optional
``observer_token`` only watches (same welcome and updates; every request is
refused with ``forbidden``). Without ``role`` the token decides; asking for
``controller`` with the observer token is refused at once, as a booth does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import time
from dataclasses import asdict
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from .. import __version__
from ..client import LiaisonError
from ..server.auth import CONTROLLER, OBSERVER
from .config import FleetConfig
from .front import FleetFront
from .link import BoothLink
from .model import FleetModel
from .store import open_store, redact
from .writer import StoreWriter

log = logging.getLogger("liaison.fleet")
UPDATE_INTERVAL = 0.2  # s between dashboard updates (changes are coalesced meanwhile)
WATCH_INTERVAL = 1.0
AUTH_TIMEOUT = 10.0
MAX_MESSAGE = 1 << 16
MAX_IN_FLIGHT = 16  # requests one dashboard may have unanswered


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartTarget(_Strict):
    """One booth of a start: its name and the participant id for its run."""

    name: str
    participant: Optional[str] = Field(None, max_length=200)


class StartArgs(_Strict):
    """``start``: one experiment on several booths, a participant each, shared expInfo values."""

    key: str = Field(min_length=1, max_length=200)
    booths: list[StartTarget] = Field(min_length=1)
    exp_info: dict[str, Union[str, int, float, bool, None]] = Field(default_factory=dict)


class BoothsArgs(_Strict):
    """``pause``, ``resume``, ``stop``: the booths to send it to."""

    booths: list[str] = Field(min_length=1)


class DashboardRequest(_Strict):
    """A request from a fleet dashboard (see the module docstring)."""

    type: Literal["request"]
    id: Union[int, str]
    cmd: Literal["start", "pause", "resume", "stop"]
    args: dict[str, Any] = Field(default_factory=dict)


class RequestError(Exception):
    """A dashboard request refused before reaching any booth: ``code`` (typed) and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Dashboard:
    """One authenticated dashboard connection: its role, its pending tile names and alerts (bounded)."""

    def __init__(self, ws, role: str = CONTROLLER) -> None:
        self.ws = ws
        self.role = role
        self.names: set[str] = set()
        self.alerts: list[dict[str, Any]] = []
        self.wakeup = asyncio.Event()
        self.sent = 0


class FleetService:
    """Everything ``liaison fleet`` runs, in one event loop (plus the store's writer thread)."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.model = FleetModel(config.booth, silent_after=config.fleet.silent_after,
                                stall_after=config.fleet.stall_after)
        self.links: dict[str, BoothLink] = {}
        self.writer: StoreWriter | None = None
        self.dashboards: set[Dashboard] = set()
        self.port: int | None = None
        self.ready = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- running --------------------------------------------------------------------------
    async def serve(self, install_signals: bool = False) -> None:
        """Open the store, follow every booth and serve the dashboard until request_stop() (or a signal)."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        url = self.config.store_url()
        store = await self.loop.run_in_executor(None, open_store, url)
        log.info("store: %s", redact(url))
        self.writer = StoreWriter(store, self.loop, on_commit=self._on_commit,
                                  on_error=lambda message: self.model.alert("*", "store", message))
        for booth in self.config.booth:
            link = BoothLink(booth, self.model, self.writer)
            self.links[booth.name] = link
            link.start()
        background = [self.loop.create_task(self._broadcast()), self.loop.create_task(self._watch())]
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self.request_stop)
        settings = self.config.fleet
        try:
            async with serve(self._handler, settings.host, settings.port, process_request=FleetFront(self.config.fleet, self.stats),
                             max_size=MAX_MESSAGE, max_queue=16, compression=None, ping_interval=20,
                             server_header=f"liaison-fleet/{__version__}") as server:
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                log.info("fleet of %d booths on http://%s:%s/", len(self.links), settings.host, self.port)
                await self._stop.wait()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*(link.stop() for link in self.links.values()), return_exceptions=True)
            await self.loop.run_in_executor(None, self.writer.stop)

    def request_stop(self) -> None:
        """Ask serve() to stop (thread-safe); queued events are still written."""
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    def _on_commit(self, stored: dict[str, int]) -> None:
        for name, seq in stored.items():
            self.model.stored(name, seq)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            self.model.check()

    # --- dashboards -------------------------------------------------------------------------
    async def _broadcast(self) -> None:
        """Every UPDATE_INTERVAL, hand the changed tiles' names and new alerts to each dashboard."""
        while True:
            await asyncio.sleep(UPDATE_INTERVAL)
            names = set(self.model.dirty)
            self.model.dirty.clear()
            alerts, self.model.new_alerts = self.model.new_alerts, []
            if not names and not alerts:
                continue
            alert_dicts = [asdict(a) for a in alerts]
            for dashboard in list(self.dashboards):
                dashboard.names |= names
                dashboard.alerts = (dashboard.alerts + alert_dicts)[-200:]
                dashboard.wakeup.set()

    async def _send_updates(self, dashboard: Dashboard) -> None:
        while True:
            await dashboard.wakeup.wait()
            dashboard.wakeup.clear()
            names, dashboard.names = dashboard.names, set()
            alerts, dashboard.alerts = dashboard.alerts, []
            tiles = [self.model.tiles[n].public() for n in sorted(names)]
            # pydantic_core's encoder: a 200-booth update is several times cheaper than with json.dumps
            await dashboard.ws.send(to_json({"type": "update", "time": time.time(), "booths": tiles,
                                             "alerts": alerts}, fallback=str).decode())
            dashboard.sent += 1

    async def _handler(self, ws) -> None:
        settings = self.config.fleet
        await ws.send(json.dumps({"type": "hello", "service": "liaison-fleet", "version": __version__,
                                  "auth": "none" if settings.no_auth else "token"}))
        try:
            raw = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT)
            auth = json.loads(raw)
        except (asyncio.TimeoutError, TimeoutError):
            await ws.close(4008, "no authentication in time")
            return
        except (ValueError, ConnectionClosed):
            await ws.close(4009, "the first message must be an auth message")
            return
        if not isinstance(auth, dict) or auth.get("type") != "auth":
            await ws.close(4009, "the first message must be an auth message")
            return
        role = self.role_for(auth)
        if role is None:
            log.warning("fleet dashboard: authentication failed")
            observer_only = auth.get("role") == CONTROLLER and isinstance(auth.get("token"), str) \
                and settings.credentials().role_for(auth["token"], OBSERVER) is not None
            message = "this token is for observers only" if observer_only else "missing or wrong token"
            await ws.send(json.dumps({"type": "reply", "id": None, "ok": False,
                                      "error": {"code": "unauthorized", "message": message}}))
            await ws.close(4001, "authentication failed")
            return
        dashboard = Dashboard(ws, role)
        await ws.send(json.dumps({"type": "welcome", "role": role, **self.model.everything()}))
        self.dashboards.add(dashboard)
        sender = asyncio.get_running_loop().create_task(self._send_updates(dashboard))
        tasks: set[asyncio.Task] = set()
        try:
            async for raw in ws:
                if len(tasks) >= MAX_IN_FLIGHT:
                    await ws.send(json.dumps({"type": "reply", "id": None, "ok": False, "error": {
                        "code": "busy", "message": f"at most {MAX_IN_FLIGHT} requests at a time"}}))
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(dashboard, raw))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            self.dashboards.discard(dashboard)
            sender.cancel()
            for task in tasks:
                task.cancel()

    def role_for(self, auth: dict[str, Any]) -> str | None:
        """The role an ``auth`` message is granted, or None (wrong token, or a role it cannot have)."""
        credentials = self.config.fleet.credentials()
        given, wanted = auth.get("token"), auth.get("role")
        if not isinstance(given, str):
            given = None
        if wanted is not None:
            return credentials.role_for(given, wanted) if wanted in (CONTROLLER, OBSERVER) else None
        return credentials.role_for(given, CONTROLLER) or credentials.role_for(given, OBSERVER)

    async def _answer(self, dashboard: Dashboard, raw) -> None:
        ws = dashboard.ws
        request_id = None
        try:
            try:
                message = json.loads(raw)
            except ValueError as exc:
                raise RequestError("invalid_json", f"not JSON: {exc}") from None
            if isinstance(message, dict):
                request_id = message.get("id") if isinstance(message.get("id"), (int, str)) else None
            try:
                request = DashboardRequest.model_validate(message)
            except ValidationError as exc:
                raise RequestError("invalid_message", describe(exc)) from None
            result = await self.handle(request.cmd, request.args, dashboard.role)
            reply = {"type": "reply", "id": request.id, "ok": True, "result": result}
        except RequestError as error:
            reply = {"type": "reply", "id": request_id, "ok": False,
                     "error": {"code": error.code, "message": error.message}}
        except Exception as exc:  # noqa: BLE001 - one bad request never ends the connection
            log.exception("fleet request failed")
            reply = {"type": "reply", "id": request_id, "ok": False,
                     "error": {"code": "internal", "message": str(exc)}}
        try:
            await ws.send(json.dumps(reply, default=str))
        except ConnectionClosed:
            pass

    # --- actions ------------------------------------------------------------------------------
    async def handle(self, cmd: str, args: dict[str, Any], role: str = CONTROLLER) -> dict[str, Any]:
        """Carry out a dashboard command on every booth it names, at once; per-booth outcomes.

        Raises :class:`RequestError` (``forbidden``) for an observer, before anything is checked or sent.
        """
        if role != CONTROLLER:
            raise RequestError("forbidden", f"this dashboard signed in with the fleet's observer token: it can "
                                            f"watch the booths but not {cmd} them")
        try:
            parsed = StartArgs.model_validate(args) if cmd == "start" else BoothsArgs.model_validate(args)
        except ValidationError as exc:
            raise RequestError("invalid_args", describe(exc)) from None
        names = [t.name for t in parsed.booths] if cmd == "start" else list(parsed.booths)
        unknown = sorted(set(names) - set(self.links))
        if unknown:
            raise RequestError("not_found", f"no booth named {', '.join(unknown)}")
        if len(set(names)) != len(names):
            raise RequestError("invalid_args", "a booth is named twice")

        async def one(name: str, coro) -> tuple[str, dict[str, Any]]:
            try:
                return name, {"ok": True, "result": await coro}
            except LiaisonError as exc:
                return name, {"ok": False, "error": {"code": exc.code, "message": exc.message}}

        if cmd == "start":
            calls = []
            for target in parsed.booths:
                exp_info = dict(parsed.exp_info)
                if target.participant is not None:
                    exp_info["participant"] = target.participant
                calls.append(one(target.name, self.links[target.name].command("run", key=parsed.key,
                                                                              exp_info=exp_info)))
        else:
            calls = [one(name, self.links[name].command(cmd)) for name in names]
        log.info("fleet dashboard -> %s on %s", cmd, ", ".join(names))
        return dict(await asyncio.gather(*calls))

    def stats(self) -> dict[str, Any]:
        """Figures for ``/api/stats``: booths connected, rows and commits, backlog, lag percentiles."""
        writer = self.writer
        return {
            "booths": len(self.links),
            "connected": sum(1 for t in self.model.tiles.values() if t.contact == "connected"),
            "rows_written": writer.rows_written if writer else 0,
            "events_written": writer.events_written if writer else 0,
            "commits": writer.commits if writer else 0,
            "backlog": writer.backlog if writer else 0,
            "lag_p50": writer.lag_percentile(50) if writer else None,
            "lag_p99": writer.lag_percentile(99) if writer else None,
            "lag_samples": writer.lag_count if writer else 0,
            "lag_histogram_ms": writer.lag_histogram() if writer else {},
            "store_failing": writer.failing if writer else None,
            "tile_updates": self.model.updates,
            "dashboards": len(self.dashboards),
            "stored_seq": {n: t.stored_seq for n, t in self.model.tiles.items()},
            "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        }


def describe(exc: ValidationError) -> str:
    """A validation error as one line: ``field: problem; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors())
