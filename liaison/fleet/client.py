"""The fleet's client of one booth: each frame decoded once, its events handed on as one batch.

A fleet follows hundreds of booths at once, so the per-event cost of the
plain :class:`liaison.client.AsyncClient` (a queue put and get per event, a
history of every run's events) is what limits it. :class:`FleetClient` is
that client with two changes:

- event frames are decoded by msgspec into typed envelopes, and the rows of
  a ``data_rows`` event are kept as each row's own JSON text (``bytes``,
  the exact span of the frame the booth sent, through ``msgspec.Raw``): the
  store keeps rows as JSON, so decoding them into Python objects only to
  encode them again cost the fleet more than all the rest it does with a
  row. Every other frame (handshake, replies, anything the typed decoder
  does not take) goes through the ordinary protocol core, decoded with
  ``pydantic_core.from_json``; the envelope checks, the replay overlap
  dropped and ``last_seq`` are that core's own (:meth:`ClientCore._event`);
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

import msgspec
from pydantic_core import from_json

from ..client import AsyncClient
from ..protocol.client import ClientCore, Event, Reply
from ..protocol.errors import ErrorCode, ProtocolError
from ..client.errors import error_from_body
from .store import row_text

log = logging.getLogger("liaison.client")

EARLY_EVENTS = 50_000  # events buffered before a sink is attached (a replay's first pages)...
EARLY_BYTES = 16 << 20  # ...and the bytes of JSON they came as, at most
Sink = Callable[[list[Event], int], None]  # a frame's events, and the frame's length


class BufferOverflow(Exception):
    """More events arrived before :meth:`FleetClient.attach` than the buffer holds."""


class _Message(msgspec.Struct):
    """The envelope fields of a message the fast path reads (other fields are not looked at)."""

    type: str
    seq: int | None = None
    event: str | None = None
    time: float | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


class _RowsData(msgspec.Struct):
    """What the fleet reads of a ``data_rows`` event's data: its run, first row number and rows."""

    run_id: str | None = None
    first_row: int = 0
    rows: list[msgspec.Raw] = []


_FRAME = msgspec.json.Decoder(list[_Message] | _Message)
_ROWS = msgspec.json.Decoder(_RowsData)
_NOT_TYPED = (msgspec.DecodeError, msgspec.ValidationError)


class FleetCore(ClientCore):
    """ClientCore with a fast path for event frames; same messages, same checks, same errors.

    The events it makes differ from the base core's in one way: a
    ``data_rows`` event's ``data["rows"]`` is a list of each row's JSON text
    (``bytes``), not of decoded rows, and its data holds only ``run_id``,
    ``first_row`` and ``rows`` when the booth sent them well-typed (else
    the whole data as sent, its rows still as texts, for the store to set
    aside as malformed).
    """

    @staticmethod
    def _decode(raw: str | bytes) -> Any:
        """``pydantic_core.from_json``, caching keys only: row values rarely repeat, keys always do."""
        return from_json(raw, cache_strings="keys")

    def receive(self, raw: str | bytes) -> list[Any]:
        """See :meth:`ClientCore.receive`; frames of events only take the typed fast path."""
        try:
            messages = _FRAME.decode(raw)
        except _NOT_TYPED:
            return super().receive(raw)  # says exactly what is wrong with it, or reads what is not typed here
        if messages.__class__ is not list:
            messages = [messages]
        for message in messages:
            if message.type != "event":
                return super().receive(raw)  # a reply, the handshake...: rare, and the core's own business
        out: list[Any] = []
        for message in messages:
            self._event(message.seq, message.event, message.time, self._data(message), out)
        return out

    @staticmethod
    def _data(message: _Message) -> Any:
        """The event's data, rows of ``data_rows`` as their JSON texts."""
        if message.event == "data_rows":
            try:
                data = _ROWS.decode(message.data)
            except _NOT_TYPED:
                pass  # wrongly typed: decoded in full below, for the store to say what is wrong with it
            else:
                return {"run_id": data.run_id, "first_row": data.first_row, "rows": list(map(bytes, data.rows))}
        try:
            data = from_json(bytes(message.data), cache_strings="keys") or {}
        except ValueError as exc:  # the frame decoded, so its parts do; kept for safety's sake
            raise ProtocolError(ErrorCode.INVALID_JSON, f"the server sent invalid JSON: {exc}") from None
        if message.event == "data_rows" and isinstance(data, dict) and isinstance(data.get("rows"), list):
            data["rows"] = [row_text(row) for row in data["rows"]]
        return data


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
