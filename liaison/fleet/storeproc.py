"""The store writer's own process: group commits into the store, off the fleet's event loop.

A fleet of 200 booths at 100 rows/s each keeps its event loop (decoding
frames, the live model, the dashboards) busy; a writer thread in the same
process waited for the GIL after every piece of I/O and fell behind. So the
store is written by a child process with a GIL of its own, run as
``python -m liaison.fleet.storeproc FD LEVEL``; the parent
(:class:`liaison.fleet.writer.StoreWriter`) and this child talk over a
socket pair, in length-prefixed pickles (both ends are this package, on a
socket no one else holds):

    parent -> child: ("open", url)  ("write", n, [ingest tuples])  ("call", id, method, args)  ("stop",)
    child -> parent: ("opened", None | error)  ("committed", n, {booth: seq}, rows, events, {ms: count})
                     ("failing", message)  ("writable",)  ("result", id, ok, value | message)
                     ("stopped", events not written)

Everything that arrived while the previous transaction was being written is
the next transaction (up to ``BATCH_ROWS``), so the commit rate adapts to
the load; a failing store is retried with a growing delay and nothing is
dropped. What the child has not yet read waits in the socket and, beyond
that, in the parent, which bounds it in bytes.
"""

from __future__ import annotations

import collections
import logging
import pickle
import queue
import socket
import struct
import sys
import threading
import time
from typing import Any, BinaryIO, Callable

from .store import Ingest, Store, StoreError, open_store, redact

log = logging.getLogger("liaison.fleet.store")
HEADER = struct.Struct("<Q")
BATCH_ROWS = 20_000  # rows (or events) per transaction at most
INBOX_BYTES = 16 << 20  # read ahead of the transaction being written, at most (the rest waits in the socket)
CALLS = frozenset({"cursors", "latest_session", "query", "version"})  # store methods the parent may call


def frame(message: Any) -> bytes:
    """One message on the wire: its length, then its pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def read_message(stream: BinaryIO, before_body: Callable[[int], None] | None = None) -> Any:
    """The next message, or None when the other end has gone (``before_body(size)`` may wait for room)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    if before_body is not None:
        before_body(size)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


class Inbox:
    """Messages read ahead, bounded in bytes: the reader waits for room before reading a body."""

    def __init__(self, limit: int = INBOX_BYTES) -> None:
        self.limit = limit
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def room(self, size: int) -> None:
        with self._cond:
            while self._items and self._bytes + size > self.limit:  # one message always fits
                self._cond.wait()
            self._bytes += size

    def fill(self, stream: BinaryIO) -> None:
        """Read messages from ``stream`` into the inbox until ``stop`` or the end (then None)."""
        while True:
            reserved = 0

            def reserve(size: int) -> None:
                nonlocal reserved
                self.room(size)
                reserved = size

            message = read_message(stream, reserve)
            self.put(message, reserved)
            if message is None or message[0] == "stop":
                return

    def put(self, message: Any, size: int) -> None:
        with self._cond:
            self._items.append((message, size))
            self._cond.notify_all()

    def get(self, block: bool = True) -> Any:
        """The oldest message; raises queue.Empty when there is none and ``block`` is false."""
        with self._cond:
            while not self._items:
                if not block:
                    raise queue.Empty
                self._cond.wait()
            message, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return message


def weight(item: tuple) -> int:
    """What an ingest tuple costs the store: one event, plus its rows."""
    if item[3] == "data_rows":
        return 1 + len(item[5].get("rows") or ())
    return 1


class ChildWriter:
    """The child's main loop: take what arrived, write it in one transaction, say what is stored."""

    def __init__(self, store: Store, send: Callable[[Any], None], lag_bins: int) -> None:
        self.store = store
        self.send = send
        self.lag_bins = lag_bins

    def run(self, inbox: Inbox) -> int:
        """Until ``stop`` (or the parent is gone): returns how many events could not be written."""
        batch: list[tuple] = []
        upto = 0  # number of the last write message in the batch
        taken = 0
        stopping = False
        failing: str | None = None
        delay = 0.1
        while True:
            block = not batch and not stopping
            while taken < BATCH_ROWS:
                try:
                    message = inbox.get(block=block)
                except queue.Empty:
                    break
                block = False
                if message is None or message[0] == "stop":
                    stopping = True
                    break
                if message[0] == "write":
                    upto = message[1]
                    batch.extend(message[2])
                    taken += sum(map(weight, message[2]))
                elif message[0] == "call":
                    self._call(*message[1:])
            if not batch:
                if stopping:
                    return 0
                continue
            try:
                rows = self.store.write([Ingest(*item) for item in batch])
            except Exception as exc:  # noqa: BLE001 - keep the batch and retry: nothing is dropped
                message = f"cannot write to the store {redact(getattr(self.store, 'url', '') or '')}: {exc}"
                if failing is None:
                    log.error("%s (retrying)", message)
                    self.send(("failing", message))
                failing = message
                if stopping:
                    log.error("stopping with %d events not stored; the booths still have them", len(batch))
                    return len(batch)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                reconnect = getattr(self.store, "reconnect", None)
                if reconnect is not None:
                    try:
                        reconnect()
                    except StoreError as error:
                        log.debug("store still unavailable: %s", error)
                continue
            delay = 0.1
            if failing is not None:
                log.info("the store is writable again")
                failing = None
                self.send(("writable",))
            self._committed(batch, upto, rows)
            batch, taken = [], 0

    def _committed(self, batch: list[tuple], upto: int, rows: int) -> None:
        now = time.time()
        stored: dict[str, int] = {}
        lags: dict[int, int] = {}
        last = self.lag_bins - 1
        for booth, _, seq, event, when, _ in batch:
            if seq > stored.get(booth, 0):
                stored[booth] = seq
            if event == "data_rows":
                ms = min(last, max(0, int((now - when) * 1000)))
                lags[ms] = lags.get(ms, 0) + 1
        self.send(("committed", upto, stored, rows, len(batch), lags))

    def _call(self, call_id: int, method: str, args: tuple) -> None:
        if method not in CALLS:
            self.send(("result", call_id, False, f"the store has no method {method!r} to call"))
            return
        try:
            self.send(("result", call_id, True, getattr(self.store, method)(*args)))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            self.send(("result", call_id, False, f"{type(exc).__name__}: {exc}"))


def main(argv: list[str] | None = None) -> int:
    """``python -m liaison.fleet.storeproc FD LEVEL``: serve the parent on the socket FD."""
    from .writer import LAG_BINS

    fd, level = (argv if argv is not None else sys.argv[1:])[:2]
    logging.basicConfig(level=int(level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=int(fd))
    stream = sock.makefile("rb")
    lock = threading.Lock()

    def send(message: Any) -> None:
        data = frame(message)
        with lock:
            try:
                sock.sendall(data)
            except OSError:
                pass  # the parent is gone: the inbox sees the end, and what is queued is still written

    first = read_message(stream)
    if not first or first[0] != "open":
        return 2
    try:
        store = open_store(first[1])
    except StoreError as exc:
        send(("opened", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - any engine error: say which store
        send(("opened", f"cannot open the store {redact(str(first[1]))}: {exc}"))
        return 1
    send(("opened", None))
    inbox = Inbox()

    # Reading (and unpickling) overlaps the transaction being written; the bounded inbox
    # leaves the rest in the socket, and the parent bounds what it holds in bytes.
    threading.Thread(target=inbox.fill, args=(stream,), name="store-inbox", daemon=True).start()
    try:
        unwritten = ChildWriter(store, send, LAG_BINS).run(inbox)
    finally:
        try:
            store.close()
        except Exception:  # noqa: BLE001
            log.exception("closing the store")
    send(("stopped", unwritten))
    return 0


if __name__ == "__main__":
    sys.exit(main())
