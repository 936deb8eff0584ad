"""The store's writer thread: group commits, bounded backlog, honest lag figures.

The event loop hands each frame's events over with :meth:`StoreWriter.put_many`
(a deque extend, never a wait); the thread takes everything queued — up to a
batch — and writes it in one transaction, so the commit rate adapts to the
load. A store that is down is retried (the backlog waits, bounded: links
stop reading from their booths while it is full). After each commit the
loop learns which seq of each booth is now stored, and the lag from the
booth's event time to the commit is sampled.

A thread, not a process: the machine's cores are the limit, not the GIL. A
writer process (tried) needs every event pickled on one side and unpickled
on the other, which cost 15% more CPU per row than the GIL costs the thread,
once the thread gets the GIL back promptly after its I/O
(:data:`SWITCH_INTERVAL`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
from typing import Callable

from .store import Ingest, Store, StoreError, redact

log = logging.getLogger("liaison.fleet")
BATCH_ROWS = 20_000  # rows (or events) per transaction at most
MAX_BACKLOG = 200_000  # queued rows+events before links must stop reading
MAX_BACKLOG_BYTES = 64 << 20  # the JSON bytes those rows arrived as, at most
LAG_BINS = 60_000  # 1 ms bins up to a minute; a lag beyond that counts in the last bin
# Python's default (5 ms) makes a thread that has just done I/O wait that long for the GIL while the
# event loop computes: with a COPY in many chunks, the writer spent most of its time waiting.
SWITCH_INTERVAL = 0.0005


def weight(item: Ingest) -> int:
    """What an event costs the backlog: one, plus its rows."""
    return 1 + len(item.data.get("rows") or ()) if item.event == "data_rows" else 1


class StoreWriter:
    """Owns the store (one thread uses it) and the queue in front of it."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop,
                 on_commit: Callable[[dict[str, int]], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)  # the fleet is a process of its own
        self.store = store
        self.loop = loop
        self.on_commit = on_commit
        self.on_error = on_error
        self._queue: collections.deque[Ingest] = collections.deque()
        self._backlog = 0
        self._bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._calls: collections.deque = collections.deque()
        self.rows_written = 0
        self.events_written = 0
        self.commits = 0
        self.lags = [0] * LAG_BINS  # histogram of commit lags of data rows, in ms: fixed size
        self.lag_count = 0
        self.failing: str | None = None
        self._thread = threading.Thread(target=self._run, name="fleet-store", daemon=True)
        self._thread.start()

    # --- loop side --------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Rows and events queued and not yet committed."""
        return self._backlog

    @property
    def full(self) -> bool:
        """Whether links must stop reading from their booths (too many rows or bytes queued)."""
        return self._backlog >= MAX_BACKLOG or self._bytes >= MAX_BACKLOG_BYTES

    def put(self, item: Ingest) -> None:
        """Queue one event (see put_many)."""
        self.put_many((item,))

    def put_many(self, items) -> None:
        """Queue events for the store (one lock and one wake-up for a whole frame's events)."""
        added = sum(map(weight, items))
        size = sum(item.size for item in items)
        with self._cond:
            self._queue.extend(items)
            self._backlog += added
            self._bytes += size
            self._cond.notify()

    async def call(self, method: str, *args):
        """``store.method(*args)`` on the writer thread (the store is not shared between threads)."""
        future = self.loop.create_future()
        with self._cond:
            self._calls.append((getattr(self.store, method), args, future))
            self._cond.notify()
        return await future

    async def drained(self, below: int | None = None, timeout: float | None = None) -> None:
        """Wait until the backlog is below ``below`` [a quarter of the limit] (and a quarter of its bytes)."""
        below = MAX_BACKLOG // 4 if below is None else below
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._backlog > below or self._bytes > MAX_BACKLOG_BYTES // 4:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the store did not catch up")
            await asyncio.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        """Write what is queued (for up to ``timeout``), then close the store."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # --- writer thread ------------------------------------------------------------------------
    def _settle(self, future, result=None, error=None) -> None:
        def apply() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.loop.call_soon_threadsafe(apply)

    def _run(self) -> None:
        delay = 0.1
        batch: list[Ingest] = []
        weight_taken = bytes_taken = 0
        while True:
            with self._cond:
                while not self._queue and not self._calls and not batch and not self._stopping:
                    self._cond.wait()
                calls = list(self._calls)
                self._calls.clear()
                while self._queue and weight_taken < BATCH_ROWS:
                    item = self._queue.popleft()
                    batch.append(item)
                    weight_taken += weight(item)
                    bytes_taken += item.size
                stopping = self._stopping
            for fn, args, future in calls:
                try:
                    self._settle(future, fn(*args))
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    self._settle(future, error=exc)
            if not batch:
                if stopping:
                    break
                continue
            try:
                rows = self.store.write(batch)
            except Exception as exc:  # noqa: BLE001 - keep the batch, retry: nothing is dropped
                message = f"cannot write to the store {redact(getattr(self.store, 'url', '') or '')}: {exc}"
                if self.failing is None:
                    log.error("%s (retrying)", message)
                    if self.on_error:
                        self.loop.call_soon_threadsafe(self.on_error, message)
                self.failing = message
                if stopping:
                    log.error("stopping with %d events not stored; the booths still have them", len(batch))
                    break
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._reconnect()
                continue
            delay = 0.1
            if self.failing is not None:
                log.info("the store is writable again")
                self.failing = None
            now = time.time()
            stored: dict[str, int] = {}
            for item in batch:
                stored[item.booth] = max(stored.get(item.booth, 0), item.seq)
                if item.event == "data_rows":
                    self.lags[min(LAG_BINS - 1, max(0, int((now - item.time) * 1000)))] += 1
                    self.lag_count += 1
            self.rows_written += rows
            self.events_written += len(batch)
            self.commits += 1
            with self._cond:
                self._backlog -= weight_taken
                self._bytes -= bytes_taken
            batch, weight_taken, bytes_taken = [], 0, 0
            if self.on_commit is not None:
                try:
                    self.loop.call_soon_threadsafe(self.on_commit, stored)
                except RuntimeError:  # loop closed during shutdown
                    pass
        try:
            self.store.close()
        except Exception:  # noqa: BLE001
            log.exception("closing the store")

    def _reconnect(self) -> None:
        reconnect = getattr(self.store, "reconnect", None)
        if reconnect is None:
            return
        try:
            reconnect()
        except StoreError as exc:
            log.debug("store still unavailable: %s", exc)

    # --- figures ------------------------------------------------------------------------------
    def lag_percentile(self, p: float) -> float | None:
        """The p-th percentile of the lag from a row's booth time to its commit, in seconds (1 ms bins)."""
        return percentile(self.lags, p)

    def lag_histogram(self) -> dict[int, int]:
        """``{ms: count}`` of the non-empty bins (for a benchmark to compare two moments)."""
        return {ms: n for ms, n in enumerate(self.lags) if n}


def percentile(bins, p: float) -> float | None:
    """p-th percentile (seconds, upper edge of the bin) of a 1 ms histogram."""
    total = sum(bins)
    if not total:
        return None
    wanted = p / 100 * total
    seen = 0
    for ms, n in enumerate(bins):
        seen += n
        if seen >= wanted:
            return (ms + 1) / 1000
    return len(bins) / 1000
