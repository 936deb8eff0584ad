"""One client connection: handshake, requests in, replies and events out.

Every reply echoes the request id (null when the message was unreadable).
A bad message gets a typed error and the connection carries on. Events go
through the client's own outbox and sender task, so a slow client only ever
delays itself, until its outbox overflows and it is cut off.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from ..protocol import (
    OBSERVER_COMMANDS, Auth, CloseCode, ErrorBody, ErrorCode, Goodbye, Hello, ProtocolError, Reply,
    Request, Welcome, dumps, parse_client_message, to_jsonable,
)
from .dispatch import error_from_worker
from .hub import Subscriber

if TYPE_CHECKING:
    from .app import LiaisonServer

log = logging.getLogger("liaison.server")

MAX_BATCH = 512  # events per WebSocket frame when a client lags


class ClientConnection:
    def __init__(self, server: "LiaisonServer", ws) -> None:
        self.server = server
        self.ws = ws
        self.client_id = secrets.token_hex(4)
        self.role = "observer"
        self.name = None
        self.connected_since: float | None = None  # wall clock, set on welcome
        self.subscriber: Subscriber | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # --- helpers ---------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def send_error(self, error: ProtocolError) -> None:
        await self.send_text(dumps(Reply(
            id=error.request_id, ok=False,
            error=ErrorBody(code=error.code, message=error.message, details=to_jsonable(error.details)),
        )))

    async def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self.send_text(dumps(Goodbye(code=code, reason=reason))), 1.0)
        except Exception:  # noqa: BLE001 - the client may already be gone or stuck
            pass
        await self.ws.close(code, reason[:120])

    # --- lifecycle ---------------------------------------------------------------------
    async def serve(self) -> None:
        config = self.server.config
        await self.send_text(dumps(Hello(
            protocol=1, server=f"liaison {self.server.version}", session_id=self.server.session_id,
            auth=config.auth_method, max_message_bytes=config.max_message_bytes,
        )))
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
            self.server.hub.unsubscribe(self.client_id)
            for task in list(self._tasks):
                task.cancel()

    async def _authenticate(self) -> Auth | None:
        config = self.server.config
        try:
            raw = await asyncio.wait_for(self.ws.recv(), config.auth_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            await self.close(CloseCode.AUTH_TIMEOUT, f"no authentication within {config.auth_timeout:g} s")
            return None
        except ConnectionClosed:
            return None
        try:
            message = parse_client_message(raw, max_bytes=config.max_message_bytes)
        except ProtocolError as error:
            await self.send_error(error)
            await self.close(CloseCode.PROTOCOL_VIOLATION, "the first message must be a valid auth message")
            return None
        if not isinstance(message, Auth):
            await self.send_error(ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first",
                                                request_id=message.id))
            await self.close(CloseCode.PROTOCOL_VIOLATION, "the first message must be an auth message")
            return None
        if not config.no_auth:
            given = (message.token or "").encode()
            if not hmac.compare_digest(given, config.token.encode()):
                log.warning("client %s: authentication failed", self.client_id)
                await self.send_error(ProtocolError(ErrorCode.UNAUTHORIZED, "missing or wrong token"))
                await self.close(CloseCode.AUTH_FAILED, "authentication failed")
                return None
        return message

    async def _welcome(self, auth: Auth) -> None:
        config = self.server.config
        self.role = auth.role
        self.name = auth.client
        self.connected_since = time.time()
        hub = self.server.hub
        self.subscriber = Subscriber(self.client_id, {"all"}, config.client_queue_limit, self._on_overflow)
        last_seq = hub.last_seq
        replay, gap = hub.subscribe(self.subscriber, auth.since)
        state = await self.server.snapshot()
        await self.send_text(dumps(Welcome(
            role=self.role, client_id=self.client_id, state=to_jsonable(state), last_seq=last_seq,
            replay=replay,
        )))
        if gap is not None:
            from ..protocol import Gap

            await self.send_text(dumps(Gap(from_seq=gap[0], to_seq=gap[1],
                                           reason="these events are no longer stored")))
        log.info("client %s (%s, %s) connected", self.client_id, self.name or "unnamed", self.role)
        self._spawn(self._pump_events())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- events out ----------------------------------------------------------------------
    async def _pump_events(self) -> None:
        subscriber = self.subscriber
        outbox = subscriber.outbox
        hub = self.server.hub
        try:
            while subscriber.catching_up:  # what it missed first, at the pace it reads
                items, subscriber.cursor = hub.page(subscriber.cursor, subscriber.topics, MAX_BATCH)
                if items:
                    await self.ws.send(items[0][1] if len(items) == 1 else
                                       "[" + ",".join(text for _, text in items) + "]")
                    subscriber.delivered_seq = items[-1][0]
                hub.caught_up(subscriber)  # no await between this check and the switch to live
            while True:
                await subscriber.wakeup.wait()
                subscriber.wakeup.clear()
                while outbox:
                    if len(outbox) == 1:
                        seq, text = outbox.popleft()
                        await self.ws.send(text)
                    else:
                        batch = [outbox.popleft() for _ in range(min(MAX_BATCH, len(outbox)))]
                        seq = batch[-1][0]
                        await self.ws.send("[" + ",".join(text for _, text in batch) + "]")
                    subscriber.delivered_seq = seq
        except ConnectionClosed:
            return

    def _on_overflow(self, subscriber: Subscriber) -> None:
        log.warning("client %s cannot keep up (%d events queued): disconnecting",
                    self.client_id, subscriber.limit)
        self.server.hub.unsubscribe(self.client_id)
        self._spawn(self.close(CloseCode.SLOW_CONSUMER,
                               f"client too slow: more than {subscriber.limit} events queued"))

    # --- requests in -----------------------------------------------------------------------
    def _handle(self, raw: str | bytes) -> None:
        try:
            message = parse_client_message(raw, max_bytes=self.server.config.max_message_bytes)
            if isinstance(message, Auth):
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, "already authenticated")
            request: Request = message
            cmd = request.cmd
            args = request.args.model_dump() if request.args is not None else {}
            self.server.journal_command(self, cmd, args, request.id)  # refused ones too: an audit trail
            if request.not_after is not None and time.time() > request.not_after:
                raise ProtocolError(ErrorCode.EXPIRED, f"{cmd!r} arrived {time.time() - request.not_after:.1f} s "
                                    "after its not_after deadline; it was not carried out",
                                    request_id=request.id)
            if self.role != "controller" and cmd not in OBSERVER_COMMANDS:
                raise ProtocolError(ErrorCode.FORBIDDEN, f"observers cannot use {cmd!r}",
                                    request_id=request.id)
            try:
                outcome = self.server.dispatcher.start(self, cmd, args)
            except ProtocolError as error:
                error.request_id = request.id
                raise
        except ProtocolError as error:
            self._spawn(self._send_error_safely(error))
            return
        except Exception as exc:  # noqa: BLE001 - never let one message kill the connection
            log.exception("internal error handling a request")
            self._spawn(self._send_error_safely(ProtocolError(ErrorCode.INTERNAL, str(exc))))
            return
        self._spawn(self._reply(request.id, outcome))

    async def _send_error_safely(self, error: ProtocolError) -> None:
        try:
            await self.send_error(error)
        except ConnectionClosed:
            pass

    async def _reply(self, request_id: Any, outcome: Any) -> None:
        try:
            if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                outcome = await outcome
            text = dumps(Reply(id=request_id, ok=True, result=to_jsonable(outcome)))
        except ProtocolError as error:
            error.request_id = request_id
            await self._send_error_safely(error)
            return
        except Exception as exc:  # noqa: BLE001 - worker errors become typed replies
            await self._send_error_safely(error_from_worker(exc, request_id))
            return
        try:
            await self.send_text(text)
        except ConnectionClosed:
            pass
