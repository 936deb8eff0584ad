"""The fleet's client of one booth: each frame decoded once, its events handed on as one batch.

A fleet follows hundreds of booths at once, so the per-event cost of the
plain :class:`liaison.client.AsyncClient` (a queue put and get per event, a
history of every run's events) is what limits it. :class:`FleetClient` is
that client with two changes:

- frames are decoded with ``pydantic_core.from_json`` (about three times
  faster than ``json.loads`` on a booth's frames), with the same protocol
  core otherwise (handshake, replies, replay overlap dropped, ``last_seq``);
- the events of each frame go to a ``sink`` callable in one list, on the
  event loop, as soon as they are read; nothing is kept once handed on.

Until a sink is attached (the link is still checking which session it
reached) events wait in a bounded buffer; if that overflows, :meth:`attach`
says so and the link starts over from its cursor, so nothing is dropped
silently.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from pydantic_core import from_json

from ..client import AsyncClient
from ..protocol.client import ClientCore, Event, Reply
from ..client.errors import error_from_body

log = logging.getLogger("liaison.client")

EARLY_EVENTS = 50_000  # events buffered before a sink is attached (a replay's first pages)...
EARLY_BYTES = 16 << 20  # ...and the bytes of JSON they came as, at most
Sink = Callable[[list[Event], int], None]  # a frame's events, and the frame's length


class BufferOverflow(Exception):
    """More events arrived before :meth:`FleetClient.attach` than the buffer holds."""


class FleetCore(ClientCore):
    """ClientCore decoding frames with ``pydantic_core.from_json``; same messages, same errors."""

    @staticmethod
    def _decode(raw: str | bytes) -> Any:
        """``pydantic_core.from_json``, caching keys only: row values rarely repeat, keys always do."""
        return from_json(raw, cache_strings="keys")


class FleetClient(AsyncClient):
    """An AsyncClient that hands each frame's events to a sink and keeps no history of them.

    ``on_end`` is called once the event stream has ended for good (closed,
    or reconnecting gave up).
    """

    def __init__(self, url: str, token: str | None = None, *, role: str = "controller",
                 name: str | None = None, since: int | None = None,
                 on_end: Callable[[], None] | None = None, **options: Any) -> None:
        super().__init__(url, token, role=role, name=name, since=since, **options)
        self.core = FleetCore(token, role=role, name=name or "liaison-fleet", last_seq=since)
        self._sink: Sink | None = None
        self._early: list[Event] = []
        self._early_bytes = 0
        self._overflow = False
        self._on_end = on_end
        self._backlog = None  # the base class's per-consumer backlog: this client has no consumers
        self._gate = asyncio.Event()
        self._gate.set()

    def attach(self, sink: Sink) -> None:
        """Hand events to ``sink`` from now on, starting with those that arrived since connect.

        Raises :class:`BufferOverflow` when some could not be kept meanwhile.
        """
        if self._overflow:
            raise BufferOverflow(f"more than {EARLY_EVENTS} events or {EARLY_BYTES >> 20} MiB arrived before the "
                                 "fleet was ready")
        early, self._early = self._early, []
        self._sink = sink
        if early:
            sink(early, self._early_bytes)
        self._early_bytes = 0

    def hold(self) -> None:
        """Stop taking frames from the booth: websockets' own flow control then stops reading the
        socket (after ``max_queue`` frames), TCP pushes back, and the booth keeps the rest."""
        self._gate.clear()

    def release(self) -> None:
        """Take frames from the booth again."""
        self._gate.set()

    def _on_frame(self, raw: str | bytes) -> None:
        events: list[Event] = []
        for item in self.core.receive(raw):
            if isinstance(item, Event):
                events.append(item)
            elif isinstance(item, Reply):
                future = self._pending.pop(item.id, None)
                if future is not None and not future.done():
                    if item.ok:
                        future.set_result(item.result)
                    else:
                        future.set_exception(error_from_body(item.error))
        if not events:
            return
        if self._sink is not None:
            self._sink(events, len(raw))
        elif len(self._early) + len(events) <= EARLY_EVENTS and self._early_bytes + len(raw) <= EARLY_BYTES:
            self._early.extend(events)
            self._early_bytes += len(raw)
        else:
            self._overflow = True

    def _on_event(self, event: Event) -> None:  # pragma: no cover - every event goes through _on_frame
        raise AssertionError("FleetClient hands events on per frame")

    def _end_streams(self) -> None:
        super()._end_streams()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()
