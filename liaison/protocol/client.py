"""The client side of the protocol, without I/O: both Python clients are this plus a socket.

Like ``h11`` or ``websockets``' own protocol objects, :class:`ClientCore`
never reads or writes anything: the caller feeds it each frame received
(:meth:`ClientCore.receive`) and sends the texts it makes
(:meth:`ClientCore.auth_text`, :meth:`ClientCore.request_text`). It keeps
the handshake's phase, numbers requests and pairs replies with them, drops
events already seen (the overlap of a replay after a reconnect), remembers
the last ``seq`` so a reconnect asks for exactly what was missed, and says
whether a closed connection is worth reconnecting.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .encoding import dumps
from .jsonable import errors_jsonable, to_jsonable
from .commands import COMMANDS, REQUEST_MODELS
from .errors import CloseCode, ErrorCode, ProtocolError
from .messages import Auth

# Close codes after which reconnecting with the same settings would fail again.
FINAL_CLOSE_CODES = frozenset({CloseCode.AUTH_FAILED, CloseCode.FORBIDDEN_ORIGIN})
END_EVENTS = ("run_finished", "run_failed")


@dataclass
class Event:
    """An event from the server: ``event`` is its type (``run_started``, ``data_rows``...).

    ``gap`` and ``alert`` notices are delivered as events too (they take no
    ``seq`` of their own: theirs is the last one seen).
    """

    seq: int
    event: str
    time: float
    data: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        """The run this event belongs to (``data['run_id']``), or None for session-wide events."""
        return self.data.get("run_id")


@dataclass
class Reply:
    """The answer to request ``id``: ``result`` when ``ok``, else ``error`` (code, message, details)."""

    id: Any
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass
class Welcome:
    """Authentication succeeded: the granted role, the state snapshot, the event position."""

    message: dict[str, Any]


@dataclass
class Refused:
    """The server refused the handshake; ``error`` is the reply's error body."""

    error: dict[str, Any]


@dataclass
class Goodbye:
    """The server is about to close the connection on purpose, with this code and reason."""

    code: int
    reason: str


@dataclass
class ClientCore:
    """Protocol state of one client across its connections (see module docstring)."""

    token: str | None
    role: str = "controller"
    name: str | None = None
    last_seq: int | None = None
    phase: str = "closed"  # closed -> hello -> welcome -> open -> closed ...
    hello: dict[str, Any] | None = None
    welcome: dict[str, Any] | None = None
    goodbye: Goodbye | None = None
    pending: set = field(default_factory=set)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- a connection's life -------------------------------------------------------------
    def connecting(self) -> None:
        """A new connection is opening: expect ``hello``."""
        self.phase = "hello"
        self.goodbye = None

    def auth_text(self) -> str:
        """The ``auth`` message, asking for every event after the last one seen."""
        return dumps(Auth(token=self.token, role=self.role, client=self.name, since=self.last_seq))

    def connection_lost(self) -> tuple[list[Any], bool]:
        """The connection ended: the requests that will never be answered, and whether to reconnect."""
        lost = sorted(self.pending, key=str)
        self.pending.clear()
        self.phase = "closed"
        final = self.goodbye is not None and self.goodbye.code in FINAL_CLOSE_CODES
        return lost, not final

    # --- requests ------------------------------------------------------------------------
    def request_text(self, cmd: str, args: dict[str, Any]) -> tuple[int, str]:
        """A new request id and the request's wire text.

        Arguments are checked with the same models the server uses, so a
        mistake raises :class:`ProtocolError` here, before anything is sent.
        A command this client does not know goes out unchecked (the server
        may be newer).
        """
        request_id = next(self._ids)
        if cmd in COMMANDS:
            try:
                model = REQUEST_MODELS[cmd].model_validate({"id": request_id, "args": args})
            except ValidationError as exc:
                raise ProtocolError(ErrorCode.INVALID_ARGS, f"invalid arguments for {cmd!r}",
                                    errors_jsonable(exc, strip=1), request_id=request_id) from None
            # An envelope field left out stays out (an older server would refuse `"not_after": null`).
            optional = {name for name in ("not_after",) if getattr(model, name, None) is None}
            text = model.model_dump_json(exclude=optional or None, fallback=to_jsonable)
        else:
            text = json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args})
        self.pending.add(request_id)
        return request_id, text

    # --- frames in -----------------------------------------------------------------------
    def receive(self, raw: str | bytes) -> list[Any]:
        """What one frame means: ``Reply``, ``Event``, ``Welcome``, ``Refused``, ``Goodbye`` items.

        Raises :class:`ProtocolError` when the server sends something that is
        not the protocol (the connection should then be dropped).
        """
        try:
            data = self._decode(raw)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"the server sent invalid JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        out: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the server sent a frame that is not a message")
            self._one(item, out)
        return out

    @staticmethod
    def _decode(raw: str | bytes) -> Any:
        """One frame's JSON (raises ValueError); a subclass may use a faster decoder."""
        return json.loads(raw)

    def _one(self, item: dict[str, Any], out: list[Any]) -> None:
        kind = item.get("type")
        if kind == "hello":
            self.hello = item
            self.phase = "welcome"
        elif kind == "welcome":
            self.welcome = item
            self.phase = "open"
            if self.last_seq is None:
                self.last_seq = item.get("last_seq", 0)
            out.append(Welcome(item))
        elif kind == "reply":
            if self.phase == "welcome" and not item.get("ok"):
                out.append(Refused(item.get("error") or {}))
                return
            request_id = item.get("id")
            if request_id in self.pending:
                self.pending.discard(request_id)
                out.append(Reply(request_id, bool(item.get("ok")), item.get("result"), item.get("error")))
        elif kind == "event":
            self._event(item.get("seq"), item.get("event"), item.get("time"), item.get("data") or {}, out)
        elif kind == "gap":
            to_seq = item.get("to_seq")
            if not isinstance(to_seq, int) or isinstance(to_seq, bool):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the server sent a gap without an integer to_seq")
            out.append(Event(to_seq, "gap", time.time(), item))
        elif kind == "alert":  # out of band: takes no seq, so it never moves last_seq
            out.append(Event(self.last_seq or 0, "alert", time.time(), item))
        elif kind == "goodbye":
            self.goodbye = Goodbye(int(item.get("code", 0)), str(item.get("reason", "")))
            out.append(self.goodbye)
        else:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"the server sent an unknown message type {kind!r}")

    def _event(self, seq: Any, name: Any, when: Any, data: Any, out: list[Any]) -> None:
        """An event envelope's fields: checked, dropped when already seen, else appended as an Event."""
        if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 and isinstance(name, str)
                and isinstance(when, (int, float)) and not isinstance(when, bool) and isinstance(data, dict)):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the server sent an event without an integer seq, "
                                "a text event name, a numeric time and an object of data")
        if self.last_seq is not None and seq <= self.last_seq:
            return  # already seen (replay overlap after a reconnect)
        self.last_seq = seq
        out.append(Event(seq, name, float(when), data))
