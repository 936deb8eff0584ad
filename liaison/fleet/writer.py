"""The fleet's side of the store writer: a bounded queue in front of the store's own process.

The event loop hands events over with :meth:`StoreWriter.put_many` (a list
append, never a wait); once per turn of the loop what was added goes to the
writer process (:mod:`liaison.fleet.storeproc`) as one message, written by
the loop itself without blocking. The child writes everything that arrived
meanwhile in one transaction and answers with what is now stored, so the
commit rate adapts to the load.

The backlog (sent or waiting, not yet committed) is bounded in bytes and in
rows: when it is full the links let go of their booths and replay from them
later (the booths keep everything in their journals). If the writer process
dies, a new one is started and every link resumes from what the store holds
(``on_restart``): what was in flight is asked for again, and the store skips
what it already has.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import pickle
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from .storeproc import HEADER, frame
from .store import Ingest, StoreError, redact

log = logging.getLogger("liaison.fleet")
MAX_BACKLOG = 200_000  # queued rows+events before links must stop reading
MAX_BACKLOG_BYTES = 64 << 20  # and queued bytes (a row is about 1 kB)
LAG_BINS = 60_000  # 1 ms bins up to a minute; a lag beyond that counts in the last bin
START_TIMEOUT = 60.0  # s for the writer process to open (and migrate) the store
STOP_TIMEOUT = 30.0  # s for it to write what is queued when the fleet stops


def weight(item: Ingest) -> int:
    return 1 + len(item.data.get("rows") or ()) if item.event == "data_rows" else 1


class StoreWriter:
    """Owns the writer process and the bounded queue in front of it (event loop only)."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop,
                 on_commit: Callable[[dict[str, int]], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 on_restart: Callable[[], None] | None = None) -> None:
        self.url = url
        self.loop = loop
        self.on_commit = on_commit
        self.on_error = on_error
        self.on_restart = on_restart
        self._process: subprocess.Popen | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task | None = None
        self._pending: list[tuple] = []  # added this turn of the loop, not yet sent
        self._pending_weight = 0
        self._flush_scheduled = False
        self._inflight: collections.deque[tuple[int, int, int]] = collections.deque()  # (n, bytes, weight)
        self._messages = itertools.count(1)
        self._calls: dict[int, asyncio.Future] = {}
        self._call_ids = itertools.count(1)
        self._backlog = 0
        self._bytes = 0
        self._up = asyncio.Event()
        self._stopping = False
        self._stopped: asyncio.Future | None = None
        self.generation = 0  # +1 each time a writer process is started
        self.rows_written = 0
        self.events_written = 0
        self.commits = 0
        self.lags = [0] * LAG_BINS  # histogram of commit lags of data rows, in ms: fixed size
        self.lag_count = 0
        self.failing: str | None = None

    # --- the writer process ----------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer process and open the store; raises StoreError if it cannot be opened."""
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "liaison.fleet.storeproc", str(theirs.fileno()),
                 str(logging.getLogger().getEffectiveLevel())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        reader, self._stream = await asyncio.open_connection(sock=ours)
        self._stream.write(frame(("open", self.url)))  # the URL (and its password) never on a command line
        try:
            answer = await asyncio.wait_for(self._read(reader), START_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            self._kill()
            raise StoreError(f"the store {redact(self.url)} did not open within {START_TIMEOUT:g} s") from None
        if answer is None or answer[0] != "opened" or answer[1] is not None:
            self._kill()
            raise StoreError(answer[1] if answer and answer[0] == "opened" else "the store's writer process died")
        self.generation += 1
        self._reader = self.loop.create_task(self._listen(reader, self.generation))
        self._up.set()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Any:
        try:
            header = await reader.readexactly(HEADER.size)
            return pickle.loads(await reader.readexactly(HEADER.unpack(header)[0]))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _listen(self, reader: asyncio.StreamReader, generation: int) -> None:
        while True:
            message = await self._read(reader)
            if message is None:
                break
            kind = message[0]
            if kind == "committed":
                self._committed(*message[1:])
            elif kind == "result":
                future = self._calls.pop(message[1], None)
                if future is not None and not future.done():
                    if message[2]:
                        future.set_result(message[3])
                    else:
                        future.set_exception(StoreError(message[3]))
            elif kind == "failing":
                if self.failing is None and self.on_error:
                    self.on_error(message[1])
                self.failing = message[1]
            elif kind == "writable":
                log.info("the store is writable again")
                self.failing = None
            elif kind == "stopped":
                if self._stopped is not None and not self._stopped.done():
                    self._stopped.set_result(message[1])
                return
        if not self._stopping and generation == self.generation:
            self.loop.create_task(self._restart())

    async def _restart(self) -> None:
        """The writer process died: start another; every link resumes from the store's cursors."""
        self._up.clear()
        self._kill()  # it closed its end: it has exited, or is about to
        code = self._process.returncode if self._process is not None else None
        if self._stream is not None:
            self._stream.close()
        message = f"the store's writer process died (exit code {code}); restarting it"
        log.error(message)
        if self.on_error:
            self.on_error(message)
        for future in self._calls.values():
            if not future.done():
                future.set_exception(StoreError("the store's writer process died before answering"))
        self._calls.clear()
        self._pending, self._pending_weight = [], 0
        self._inflight.clear()
        self._backlog = self._bytes = 0
        delay = 0.2
        while not self._stopping:
            try:
                await self.start()
                break
            except StoreError as exc:
                log.error("%s (retrying)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.on_restart is not None and not self._stopping:
            self.on_restart()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    # --- loop side --------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Rows and events handed over and not yet committed."""
        return self._backlog + self._pending_weight

    @property
    def full(self) -> bool:
        return (not self._up.is_set() or self.backlog >= MAX_BACKLOG or self._bytes >= MAX_BACKLOG_BYTES)

    def put(self, item: Ingest) -> None:
        self.put_many((item,))

    def put_many(self, items) -> None:
        """Queue events for the store; they leave for the writer process at the end of this loop turn."""
        if not self._up.is_set():
            return  # no writer: the links resume from the store's cursors once there is one again
        self._pending.extend((i.booth, i.session_id, i.seq, i.event, i.time, i.data) for i in items)
        self._pending_weight += sum(map(weight, items))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._stream is None or not self._up.is_set():
            return
        items, self._pending = self._pending, []
        added, self._pending_weight = self._pending_weight, 0
        number = next(self._messages)
        data = frame(("write", number, items))
        self._inflight.append((number, len(data), added))
        self._backlog += added
        self._bytes += len(data)
        self._stream.write(data)  # buffered by the transport: never blocks the loop

    def _committed(self, upto: int, stored: dict[str, int], rows: int, events: int, lags: dict[int, int]) -> None:
        while self._inflight and self._inflight[0][0] <= upto:
            _, size, added = self._inflight.popleft()
            self._bytes -= size
            self._backlog -= added
        self.rows_written += rows
        self.events_written += events
        self.commits += 1
        for ms, n in lags.items():
            self.lags[ms] += n
            self.lag_count += n
        if self.on_commit is not None:
            self.on_commit(stored)

    async def call(self, method: str, *args):
        """``store.method(*args)`` in the writer process (after everything queued before it)."""
        await self._up.wait()
        self._flush()
        call_id = next(self._call_ids)
        future = self.loop.create_future()
        self._calls[call_id] = future
        self._stream.write(frame(("call", call_id, method, args)))
        return await future

    async def drained(self, below: int = MAX_BACKLOG // 4, timeout: float | None = None) -> None:
        """Wait until a writer process runs and the backlog is below ``below`` (and a quarter of its bytes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._up.is_set() or self.backlog > below or self._bytes > MAX_BACKLOG_BYTES // 4:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the store did not catch up")
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Write what is queued (for up to ``timeout``), then close the store and end the process."""
        self._stopping = True
        if self._stream is not None and self._up.is_set():
            self._flush()
            self._stopped = self.loop.create_future()
            self._stream.write(frame(("stop",)))
            try:
                unwritten = await asyncio.wait_for(self._stopped, timeout)
                if unwritten:
                    log.error("stopped with %d events not stored; the booths still have them", unwritten)
            except (asyncio.TimeoutError, TimeoutError):
                log.error("the store's writer did not finish within %g s; the booths still have the rest",
                          timeout)
        if self._process is not None:
            try:
                await asyncio.wait_for(self.loop.run_in_executor(None, self._process.wait), 5)
            except (asyncio.TimeoutError, TimeoutError):
                self._kill()
        if self._stream is not None:
            self._stream.close()
        if self._reader is not None:
            self._reader.cancel()

    @property
    def pid(self) -> int | None:
        """The writer process's id (tests kill it)."""
        return None if self._process is None else self._process.pid

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

