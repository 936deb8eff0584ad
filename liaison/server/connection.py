"""One client connection: handshake, requests in, replies and events out.

Every reply echoes the request id (null when the message was unreadable).
A bad message gets a typed error and the connection carries on. Replies and
events go through the client's own bounded outbox (see
:class:`~liaison.server.hub.Subscriber`) and one sender task, replies first,
so a slow client only ever delays itself, until its outbox overflows (in
bytes or events) and it is cut off. A client that pipelines more than
``max_in_flight`` requests gets ``busy`` for the excess.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..protocol import (
    OBSERVER_COMMANDS, Auth, CloseCode, ErrorCode, Gap, Goodbye, ProtocolError, Request, Welcome, dumps,
    parse_client_message, reply_error, reply_text, to_jsonable,
)
from .auth import Credentials
from .clients import ClientInfo, ClientRegistry
from .commandlog import CommandLog
from .dispatch import Dispatcher
from .hub import Hub, Subscriber
from .link import error_from_worker

log = logging.getLogger("liaison.server")

MAX_BATCH = 512  # events per WebSocket frame when a client lags


@dataclass(frozen=True)
class Limits:
    """What one connection may cost the server."""

    max_message_bytes: int = 1 << 20
    auth_timeout: float = 10.0
    client_queue_limit: int = 50_000
    client_buffer_bytes: int = 16 << 20
    max_in_flight: int = 1024


def printable(text: str | None, limit: int = 100) -> str:
    """A client-chosen name made safe for one log line (no newlines or control characters)."""
    if text is None:
        return "unnamed"
    return ascii(text[:limit])[1:-1]


class ClientConnection:
    """Serves one WebSocket from ``hello`` to close; see the module docstring."""

    def __init__(self, ws, *, credentials: Credentials, hub: Hub, dispatcher: Dispatcher, commands: CommandLog,
                 clients: ClientRegistry, hello: str, limits: Limits) -> None:
        self.ws = ws
        self.credentials = credentials
        self.hub = hub
        self.dispatcher = dispatcher
        self.commands = commands
        self.clients = clients
        self.hello = hello
        self.limits = limits
        self.client_id = secrets.token_hex(4)
        self.role = "observer"
        self.name: str | None = None
        self.subscriber: Subscriber | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._in_flight = 0

    # --- sending --------------------------------------------------------------------------
    def queue_reply(self, text: str) -> None:
        """Send a reply after any reply before it, ahead of queued events (loop thread)."""
        subscriber = self.subscriber
        if subscriber is None:
            self._spawn(self._send_direct(text))
        else:
            subscriber.offer_reply(text)

    async def _send_direct(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            pass

    def send_error(self, error: ProtocolError) -> None:
        """Queue an error reply for ``error`` (its code, message, details and request id), like any reply."""
        self.queue_reply(dumps(reply_error(error)))

    async def close(self, code: int, reason: str) -> None:
        """Say goodbye (with the close code and why), then close."""
        if self._closing:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self.ws.send(dumps(Goodbye(code=code, reason=reason))), 1.0)
        except Exception:  # noqa: BLE001 - the client may already be gone or stuck
            pass
        await self.ws.close(code, reason[:120])

    # --- lifecycle ---------------------------------------------------------------------
    async def serve(self) -> None:
        """The connection's whole life: hello, auth, then requests until it closes."""
        await self.ws.send(self.hello)
        auth = await self._authenticate()
        if auth is None:
            return
        try:
            await self._welcome(auth)
            async for raw in self.ws:
                self._handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self.hub.unsubscribe(self.client_id)
            self.clients.remove(self.client_id)
            for task in list(self._tasks):
                task.cancel()

    async def _authenticate(self) -> Auth | None:
        limits = self.limits
        try:
            raw = await asyncio.wait_for(self.ws.recv(), limits.auth_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            await self.close(CloseCode.AUTH_TIMEOUT, f"no authentication within {limits.auth_timeout:g} s")
            return None
        except ConnectionClosed:
            return None
        try:
            message = parse_client_message(raw, max_bytes=limits.max_message_bytes)
        except ProtocolError as error:
            await self._send_direct(dumps(reply_error(error)))
            await self.close(CloseCode.PROTOCOL_VIOLATION, "the first message must be a valid auth message")
            return None
        if not isinstance(message, Auth):
            await self._send_direct(dumps(reply_error(ProtocolError(
                ErrorCode.UNAUTHORIZED, "authenticate first", request_id=message.id))))
            await self.close(CloseCode.PROTOCOL_VIOLATION, "the first message must be an auth message")
            return None
        role = self.credentials.role_for(message.token, message.role)
        if role is None:
            log.warning("client %s: authentication failed (asked for %s)", self.client_id, message.role)
            reason = ("this token is for observers only" if message.role == "controller"
                      and self.credentials.role_for(message.token, "observer") else "missing or wrong token")
            await self._send_direct(dumps(reply_error(ProtocolError(ErrorCode.UNAUTHORIZED, reason))))
            await self.close(CloseCode.AUTH_FAILED, "authentication failed")
            return None
        self.role = role
        return message

    async def _welcome(self, auth: Auth) -> None:
        self.name = auth.client
        hub = self.hub
        limits = self.limits
        subscriber = Subscriber(self.client_id, {"all"}, limits.client_queue_limit, self._on_overflow,
                                limit_bytes=limits.client_buffer_bytes)
        last_seq = hub.last_seq
        replay, gap = hub.subscribe(subscriber, auth.since)
        self.clients.add(ClientInfo(self.client_id, self.name, self.role))
        state = await self.dispatcher.snapshot()
        await self.ws.send(dumps(Welcome(role=self.role, client_id=self.client_id, state=to_jsonable(state),
                                         last_seq=last_seq, replay=replay)))
        if gap is not None:
            await self.ws.send(dumps(Gap(from_seq=gap[0], to_seq=gap[1], reason="these events are no longer stored")))
        self.subscriber = subscriber  # replies queue behind the welcome from now on
        log.info("client %s (%s, %s) connected", self.client_id, printable(self.name), self.role)
        self._spawn(self._pump())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- out: replies first, then what it missed, then live events ----------------------------
    async def _pump(self) -> None:
        subscriber = self.subscriber
        ws = self.ws
        hub = self.hub
        try:
            while True:
                await subscriber.wakeup.wait()
                subscriber.wakeup.clear()
                while True:
                    if subscriber.replies:
                        await ws.send(subscriber.take_reply())
                    elif subscriber.catching_up:  # what it missed, at the pace it reads
                        items, subscriber.cursor = hub.page(subscriber.cursor, subscriber.topics, MAX_BATCH)
                        if items:
                            await ws.send(_frame(items))
                        hub.caught_up(subscriber)  # no await between this check and the switch to live
                    elif subscriber.outbox:
                        await ws.send(_frame(subscriber.take_events(MAX_BATCH)))
                    else:
                        break
        except ConnectionClosed:
            return

    def _on_overflow(self, subscriber: Subscriber) -> None:
        log.warning("client %s cannot keep up (more than %d events or %d bytes queued): disconnecting",
                    self.client_id, subscriber.limit, subscriber.limit_bytes)
        self.hub.unsubscribe(self.client_id)
        self._spawn(self.close(CloseCode.SLOW_CONSUMER,
                               f"client too slow: more than {subscriber.limit} events or "
                               f"{subscriber.limit_bytes} bytes queued"))

    # --- in --------------------------------------------------------------------------------------
    def _handle(self, raw: str | bytes) -> None:
        if self.subscriber is not None and self.subscriber.overflowed:
            return  # being cut off for not reading: nothing more is worth answering
        request_id = None
        try:
            message = parse_client_message(raw, max_bytes=self.limits.max_message_bytes)
            if isinstance(message, Auth):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "already authenticated")
            request: Request = message
            request_id, cmd = request.id, request.cmd
            if request.not_after is not None and time.time() > request.not_after:
                self.commands.record(self, cmd, None, request_id, refused="expired")
                raise ProtocolError(ErrorCode.EXPIRED, f"{cmd!r} arrived {time.time() - request.not_after:.1f} s "
                                    "after its not_after deadline; it was not carried out")
            if self.role != "controller" and cmd not in OBSERVER_COMMANDS:
                self.commands.record(self, cmd, None, request_id, refused="forbidden")
                raise ProtocolError(ErrorCode.FORBIDDEN, f"observers cannot use {cmd!r}")
            if self._in_flight >= self.limits.max_in_flight:
                self.commands.record(self, cmd, None, request_id, refused="busy")
                raise ProtocolError(ErrorCode.BUSY, f"more than {self.limits.max_in_flight} requests of this "
                                    "connection are waiting for an answer; wait for some replies")
            args = request.args.model_dump()
            self.commands.record(self, cmd, args, request_id)  # an audit trail, on disk before it runs
            outcome = self.dispatcher.start(self, cmd, args)
        except ProtocolError as error:
            error.request_id = request_id if error.request_id is None else error.request_id
            self.send_error(error)
            return
        except Exception as exc:  # noqa: BLE001 - never let one message kill the connection
            log.exception("internal error handling a request")
            self.send_error(ProtocolError(ErrorCode.INTERNAL, str(exc), request_id=request_id))
            return
        if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
            self._in_flight += 1
            self._spawn(self._reply_later(request_id, outcome))
        else:
            self._reply_now(request_id, outcome)

    def _reply_now(self, request_id: Any, result: Any) -> None:
        try:
            text = reply_text(request_id, result)
        except Exception as exc:  # noqa: BLE001 - an unserialisable result is a server bug, said as such
            self.send_error(error_from_worker(exc, request_id))
            return
        self.queue_reply(text)

    async def _reply_later(self, request_id: Any, outcome: Any) -> None:
        try:
            result = await outcome
        except Exception as exc:  # noqa: BLE001 - worker errors become typed replies
            self.send_error(error_from_worker(exc, request_id))
            return
        finally:
            self._in_flight -= 1
        self._reply_now(request_id, result)


def _frame(items: list[tuple[int, str]]) -> str:
    """One event as itself, several as a JSON array."""
    return items[0][1] if len(items) == 1 else "[" + ",".join(text for _, text in items) + "]"
