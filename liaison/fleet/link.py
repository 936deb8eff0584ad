"""One booth link: the fleet's client connection to one booth, resumed from the store.

The link is an ordinary :class:`liaison.client.AsyncClient`. It asks the
booth for every event after the last one the store holds for that booth's
session (``since``), so neither a dropped connection, a restarted booth nor a
restarted fleet service loses or repeats anything: what was stored is the
cursor, and the store ignores what it already has. When the store's backlog
is full the link stops reading from the booth until the store has caught up
(TCP pushes back on the booth, which keeps everything in its journal and, if
it must, drops the fleet's connection: the next one replays what was
missed), so memory here stays bounded and an overloaded store is not made
slower by every booth replaying at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from ..client import AsyncClient, LiaisonError, Unauthorized
from ..protocol.client import Event
from .client import BufferOverflow, FleetClient
from .config import BoothConfig
from .model import FleetModel
from .store import Ingest, problem_with, set_aside
from .writer import StoreWriter

log = logging.getLogger("liaison.fleet")
HEARTBEAT = 5.0  # s between pings (and trial queries while running)
TRIALS_LOOKAHEAD = 10_000
COMMAND_TIMEOUT = 60.0  # s: a run's start loads the experiment first


class Resync(Exception):
    """Start the link over (another session at the booth's URL, or the store must catch up)."""


class BoothLink:
    """Follows one booth until :meth:`stop`; never raises out of :meth:`run`."""

    def __init__(self, booth: BoothConfig, model: FleetModel, writer: StoreWriter) -> None:
        self.booth = booth
        self.name = booth.name
        self.model = model
        self.writer = writer
        self.client: FleetClient | None = None
        self.session_id: str | None = None
        self.queued_seq: int | None = None  # last event handed to the writer, this session
        self._snapshot_seq = 0
        self._welcomed: dict | None = None  # the welcome the model last took a snapshot from
        self._stopped = False
        self._task: asyncio.Task | None = None
        self._trial_total: tuple[str, int | None] | None = None
        self._outcome: asyncio.Future | None = None  # how the current connection's feed ends
        self._held = False  # not reading from the booth until the store catches up
        self._tls_refused = False  # the booth's certificate was refused (alerted once until it is accepted)
        self._release: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        """Start following the booth in a task of its own (returned)."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"booth-{self.name}")
        return self._task

    async def stop(self) -> None:
        """Stop following the booth and close its connection (what was queued is still written)."""
        self._stopped = True
        if self._release is not None:
            self._release.cancel()
        if self.client is not None:
            await self.client.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        """Follow the booth until stop(): connect, resume, consume; on any failure say why and retry."""
        delay = 0.2
        while not self._stopped:
            began = time.monotonic()
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Resync:
                delay = 0.05
            except Unauthorized as exc:
                self.model.contact(self.name, "no contact", f"refused: {exc.message}")
                self.model.alert(self.name, "refused", f"the booth refused the fleet's token: {exc.message}")
                delay = 30.0  # a wrong token will not fix itself quickly; do not hammer the booth
            except (LiaisonError, OSError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                self.model.contact(self.name, "no contact", message)
                if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                    # Not the certificate pinned (or trusted) for this booth: someone else may be answering
                    # at its address. Say so once, loudly, and do not hammer it.
                    if not self._tls_refused:
                        self.model.alert(self.name, "tls", message)
                    self._tls_refused = True
                    delay = 30.0
            except Exception as exc:  # noqa: BLE001 - a link never dies; it says why and retries
                log.exception("booth %s: link failed", self.name)
                self.model.contact(self.name, "no contact", f"internal error: {exc}")
            finally:
                client, self.client = self.client, None
                if client is not None:
                    await client.close()
            if self._stopped:
                return
            if time.monotonic() - began > 10:
                delay = 0.2  # it was up for a while: try again soon
            await asyncio.sleep(delay)
            delay = min(max(delay, 0.2) * 2, 5.0)

    # --- following a booth ----------------------------------------------------------------------
    async def _since(self, session_id: str | None) -> int | None:
        """Where to resume for ``session_id`` (None: the booth's latest session in the store)."""
        if session_id is not None and session_id == self.session_id and self.queued_seq is not None:
            return self.queued_seq
        if session_id is None:
            latest = await self.writer.call("latest_session", self.name)
            if latest is None:
                return 0
            self.session_id, self.queued_seq = latest
            return latest[1]
        cursors = await self.writer.call("cursors", self.name)
        return cursors.get(session_id, 0)

    async def _follow(self) -> None:
        if self.writer.full:
            await self.writer.drained()
        since = await self._since(self.session_id)
        outcome = self._outcome = asyncio.get_running_loop().create_future()
        try:
            await self._feed(since, outcome)
        finally:
            if outcome.done() and not outcome.cancelled():
                outcome.exception()  # retrieved: it was raised, or this connection failed before its feed
            else:
                outcome.cancel()

    async def _feed(self, since: int | None, outcome: asyncio.Future) -> None:
        client = FleetClient(self.booth.url, self.booth.token, role=self.booth.role, name="liaison-fleet",
                             since=since, reconnect=True, reconnect_for=3600.0, timeout=10.0,
                             fingerprint=self.booth.fingerprint, ca_file=self.booth.ca_file,
                             on_end=lambda: self._end(LiaisonError("connection to the booth lost",
                                                                   code="connection_lost")))
        self.client = client
        await client.connect()
        session_id = client.hello.get("session_id")
        if session_id != self.session_id:
            # Another session than the one resumed (first contact, or a new data folder at this URL):
            # ask again from that session's own cursor.
            right = await self._since(session_id)
            self.session_id, self.queued_seq = session_id, right
            if right != since:
                raise Resync()
        self.queued_seq = since
        self._welcome(client)
        try:
            client.attach(self._take)
        except BufferOverflow as exc:
            log.warning("booth %s: %s; starting over from the store's cursor", self.name, exc)
            raise Resync() from None
        heart = asyncio.get_running_loop().create_task(self._heartbeat(client))
        try:
            await outcome  # raises how the feed ended: Resync, or the connection lost for good
        finally:
            heart.cancel()

    def _end(self, why: Exception) -> None:
        """End the current connection's feed (first reason wins); ``_follow`` raises it."""
        outcome = self._outcome
        if outcome is not None and not outcome.done():
            outcome.set_exception(why)

    def _welcome(self, client: AsyncClient) -> None:
        self._tls_refused = False
        welcome = client.welcome or {}
        self._snapshot_seq = int(welcome.get("last_seq") or 0)
        self._welcomed = welcome
        self.model.snapshot(self.name, welcome.get("state") or {}, self.session_id)
        self.model.contact(self.name, "connected")

    def _take(self, events: list[Event], size: int) -> None:
        """One frame's events (``size`` bytes of JSON; on the loop, as read): queue them for the store,
        update the tile."""
        outcome, client = self._outcome, self.client
        if outcome is None or outcome.done() or client is None:
            return  # this feed is ending: what it still delivers is asked for again on the next one
        if client.welcome is not self._welcomed:  # the client reconnected by itself
            if (client.hello or {}).get("session_id") != self.session_id:
                self._end(Resync())
                return
            self._welcome(client)
        writer, name, model, session_id = self.writer, self.name, self.model, self.session_id
        snapshot_seq = self._snapshot_seq
        share = size // len(events) + 1  # each event's part of the frame, for the backlog's byte bound
        items = []
        for event in events:
            kind = event.event
            if kind == "gap":
                model.alert(name, "gap", f"the booth no longer has events {event.data.get('from_seq')}.."
                                         f"{event.data.get('to_seq')}: they are missing from the store")
                continue
            if kind == "alert":  # out of band (no seq of its own): shown, not stored
                model.alert(name, "booth", str(event.data.get("message") or event.data.get("code")))
                continue
            item = Ingest(name, session_id, event.seq, kind, event.time, event.data, share)
            problem = problem_with(kind, event.data)
            if problem is not None:  # kept whole, but as what it is: the store and the tile go on with the rest
                items.append(set_aside(item, problem))
                model.alert(name, "malformed", f"event {event.seq} ({kind}) could not be stored as one: {problem}; "
                                               "it is kept in the store as a malformed_event")
                continue
            items.append(item)
            if event.seq > snapshot_seq:
                model.event(name, kind, event.seq, event.time, event.data)
        if items:
            writer.put_many(items)
            self.queued_seq = items[-1].seq
        if writer.full and not self._held:
            # Stop reading this booth until the store catches up: the booth keeps what we do not read
            # (and, if it must, lets us go: the next connection replays it), so nothing piles up here.
            log.warning("booth %s: the store is behind (%d queued); holding this booth's feed",
                        name, writer.backlog)
            self._held = True
            client.hold()
            model.contact(name, "connected", "the store is behind: not reading this booth until it catches up")
            self._release = asyncio.get_running_loop().create_task(self._release_when_drained(client))

    async def _release_when_drained(self, client: FleetClient) -> None:
        try:
            await self.writer.drained()
        finally:
            self._held = False
            if self.client is client:
                client.release()
                self.model.contact(self.name, "connected")

    async def _heartbeat(self, client: AsyncClient) -> None:
        """Ping (last contact) and, while a run goes on, ask which trial it is on."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            if self._held:
                continue  # its answer would wait behind the frames we are not reading
            try:
                await client.ping()
                self.model.contact(self.name, "connected")
            except (LiaisonError, asyncio.TimeoutError, TimeoutError) as exc:
                self.model.contact(self.name, "no contact", getattr(exc, "message", None) or "no answer to a ping")
                continue
            tile = self.model.tiles[self.name]
            if tile.status in ("running", "paused") and tile.run_id:
                await self._ask_trials(client, tile.run_id)

    async def _ask_trials(self, client: AsyncClient, run_id: str) -> None:
        want_total = self._trial_total is None or self._trial_total[0] != run_id
        try:
            result = await client.trials(n=TRIALS_LOOKAHEAD if want_total else 1, start=0)
        except (LiaisonError, asyncio.TimeoutError, TimeoutError):
            return  # informational only: the loop may not exist yet
        current = (result or {}).get("current") or {}
        if not isinstance(current.get("thisN"), int):
            return
        n = current["thisN"] + 1
        if want_total:
            future = len(result.get("future") or [])
            self._trial_total = (run_id, n + future if future < TRIALS_LOOKAHEAD else None)
        self.model.trials(self.name, run_id, n, self._trial_total[1])

    # --- commands from the fleet dashboard --------------------------------------------------------
    async def command(self, cmd: str, **args):
        """Send one command to the booth; raises LiaisonError (typed) when it cannot."""
        client = self.client
        if client is None or client.welcome is None:
            raise LiaisonError(f"booth {self.name} is not connected", code="connection_lost")
        if self.booth.role != "controller" and cmd not in ("ping", "state", "trials"):
            raise LiaisonError(f"the fleet only observes booth {self.name} (role = \"observer\")",
                               code="forbidden")
        try:
            return await client.request(cmd, timeout=COMMAND_TIMEOUT, **args)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise LiaisonError(f"booth {self.name} did not answer {cmd} within {COMMAND_TIMEOUT:g} s",
                               code="timeout") from exc
