"""Fan events out to clients: serialise once, journal, buffer for replay, never block.

Events arrive from the worker's reader thread. They are queued and handed to
the event loop in batches (one wake-up per batch, not per event), serialised
to JSON once, written to the journal in one transaction per batch (so nothing
reaches a client that is not on disk), appended to the replay buffer, and put
on every subscribed client's bounded outbox. A client whose outbox overflows
is cut off (it is told why) so it can never slow the others, the server or
the experiment. The outbox is bounded in bytes (and in events), and a
client's replies wait in the same budget, ahead of its events.

If the journal cannot be written (the disk is full), nothing more is fanned
out: a client only ever sees what is on disk. Listeners are told once
(``on_storage_failure``) and every client gets an out-of-band ``alert``; the
hub retries with every batch and tells everyone when writing works again.

A client that reconnects with ``since`` catches up at its own pace: its sender
reads what it missed page by page, from the in-memory buffer or, further
back, from the journal, and only joins the live stream once it has caught up.
So a replay of any length never fills its outbox, and a client cut off for
being slow can come back and get every event it missed. Only events that
exist nowhere any more (no journal that old) become an explicit gap.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from session.events import Event
from liaison.store.journal import Journal

from ..protocol import TOPIC_OF_EVENT, Alert, Topic, dumps, event_json
from ..protocol.commands import OPT_IN_TOPICS

log = logging.getLogger("liaison.server")
PAGE = 512  # events per catch-up read
ALL = Topic.ALL.value


def text_bytes(text: str) -> int:
    """Bytes ``text`` takes as UTF-8 (cheap for ASCII, which nearly every message is)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass
class Subscriber:
    """A client's view of the event stream: its topics, its outbox and its replies, bounded in bytes."""

    client_id: str
    topics: set[str]
    limit: int  # events queued
    on_overflow: Callable[["Subscriber"], None]
    limit_bytes: int = 16 << 20  # events and replies queued, in bytes
    outbox: collections.deque = field(default_factory=collections.deque)
    replies: collections.deque = field(default_factory=collections.deque)
    queued_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    catching_up: bool = False  # reading missed events from the buffer/journal, not the outbox
    cursor: int = 0  # last seq handled while catching up

    def wants(self, topic: str) -> bool:
        """Whether an event of ``topic`` goes to this client (``all`` takes everything)."""
        topics = self.topics
        return topic in topics or (ALL in topics and topic not in OPT_IN_TOPICS)

    def offer(self, seq: int, text: str) -> None:
        """Queue an event (loop thread); overflowing the bounds cuts the client."""
        if self.overflowed or self.catching_up:  # a catching-up client reads it from the buffer later
            return
        size = text_bytes(text)
        if len(self.outbox) >= self.limit or self.queued_bytes + size > self.limit_bytes:
            self._overflow()
            return
        self.queued_bytes += size
        self.outbox.append((seq, text, size))
        self.wakeup.set()

    def offer_reply(self, text: str) -> bool:
        """Queue a reply (or an alert), sent before queued events; False if it cut the client."""
        if self.overflowed:
            return False
        size = text_bytes(text)
        if self.queued_bytes + size > self.limit_bytes and (self.outbox or self.replies):
            self._overflow()
            return False
        self.queued_bytes += size  # a lone reply bigger than the budget still goes: it is bounded by paging
        self.replies.append((text, size))
        self.wakeup.set()
        return True

    def take_events(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` queued events, oldest first, as ``(seq, text)``."""
        outbox = self.outbox
        taken = [outbox.popleft() for _ in range(min(limit, len(outbox)))]
        self.queued_bytes -= sum(size for _, _, size in taken)
        return [(seq, text) for seq, text, _ in taken]

    def take_reply(self) -> str:
        """The oldest queued reply (loop thread), its bytes released from the budget. Raises IndexError if none."""
        text, size = self.replies.popleft()
        self.queued_bytes -= size
        return text

    def _overflow(self) -> None:
        self.overflowed = True
        self.outbox.clear()
        self.replies.clear()
        self.queued_bytes = 0
        self.on_overflow(self)


class Hub:
    """Owns the event sequence seen by clients, the replay buffer and subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, replay_size: int = 100_000,
                 journal: Journal | None = None, replay_bytes: int = 32 << 20) -> None:
        self.loop = loop
        # Recent events in memory, bounded by count and by size (older ones come from the journal).
        self.replay: collections.deque[tuple[int, str, str]] = collections.deque()
        self.replay_size = replay_size
        self.replay_bytes = replay_bytes
        self._replay_chars = 0
        self.subscribers: dict[str, Subscriber] = {}
        self.journal = journal
        self.last_seq = journal.last_seq if journal is not None else 0
        self.storage_error: str | None = None  # why the journal cannot be written, while it cannot
        self.on_storage_failure: list[Callable[[str], None]] = []
        self.listeners: list[Callable[[Event], None]] = []
        self._incoming: collections.deque[Event] = collections.deque()
        self._scheduled = False
        self._lock = threading.Lock()

    # called from any thread (the worker's reader) -------------------------------
    def push(self, event: Event) -> None:
        """Queue an event for journalling and fan-out (any thread; never blocks on disk or clients).

        One loop wake-up serves every event pushed before it runs; after the loop has
        closed, events are dropped.
        """
        self._incoming.append(event)
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed during shutdown
            pass

    # loop thread ---------------------------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        incoming = self._incoming
        while incoming:
            batch = []
            while incoming and len(batch) < 4096:
                event = incoming.popleft()
                batch.append((event, TOPIC_OF_EVENT.get(event.type, Topic.STATUS).value, event_json(event)))
            if self._journal(batch):
                for item in batch:
                    self._fan_out(*item)

    def drain(self) -> None:
        """Journal and fan out whatever is queued now (loop thread; also at shutdown)."""
        self._drain()

    def dispatch(self, event: Event) -> None:
        """Journal and fan out one event (loop thread)."""
        item = (event, TOPIC_OF_EVENT.get(event.type, Topic.STATUS).value, event_json(event))
        if self._journal([item]):
            self._fan_out(*item)

    def _journal(self, batch: list[tuple[Event, str, str]]) -> bool:
        """Write the batch; False (and nothing fanned out) when the journal cannot take it."""
        if self.journal is None:
            return True
        try:
            self.journal.append(batch)
        except Exception as exc:  # noqa: BLE001 - a full disk must not go unnoticed: stop, say so
            self._storage_failed(exc, batch)
            return False
        if self.storage_error is not None:
            self._storage_restored()
        return True

    def _storage_failed(self, exc: BaseException, batch: list[tuple[Event, str, str]]) -> None:
        first, last = batch[0][0].seq, batch[-1][0].seq
        if self.storage_error is not None:
            log.error("journal still unwritable: events %d..%d not delivered", first, last)
            return
        self.storage_error = f"{type(exc).__name__}: {exc}"
        log.error("could not write events %d..%d to the journal (%s): no more events go to clients "
                  "until it can be written again", first, last, self.storage_error)
        # The buffer must stay contiguous: after the hole, replay starts afresh (older events come from disk).
        self.replay.clear()
        self._replay_chars = 0
        self.alert("storage_failed", "the server cannot write its journal: no events are delivered and no "
                   "run starts until it can again (is the disk full?)",
                   {"error": self.storage_error, "first_undelivered_seq": first})
        for listener in self.on_storage_failure:
            try:
                listener(self.storage_error)
            except Exception:  # noqa: BLE001
                log.exception("storage failure listener failed")

    def _storage_restored(self) -> None:
        log.warning("the journal can be written again (%s is over)", self.storage_error)
        self.storage_error = None
        self.alert("storage_restored", "the server can write its journal again", {})

    def probe_storage(self) -> bool:
        """While the journal is failing, try a small write; True once it works again (and clients are told)."""
        if self.storage_error is None or self.journal is None:
            return True
        try:
            self.journal.set_state("storage_probe", self.last_seq)
        except Exception:  # noqa: BLE001 - still failing: try again later
            return False
        self._storage_restored()
        return True

    def alert(self, code: str, message: str, details: dict) -> None:
        """Tell every client now, out of band (alerts are not events: they take no seq)."""
        text = dumps(Alert(code=code, message=message, details=details))
        for subscriber in list(self.subscribers.values()):
            subscriber.offer_reply(text)

    def _fan_out(self, event: Event, topic: str, text: str) -> None:
        self.last_seq = event.seq
        replay = self.replay
        replay.append((event.seq, topic, text))
        self._replay_chars += len(text)
        while len(replay) > self.replay_size or (self._replay_chars > self.replay_bytes and len(replay) > 1):
            self._replay_chars -= len(replay.popleft()[2])
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001
                log.exception("event listener failed on %s", event.type)
        for subscriber in list(self.subscribers.values()):
            if subscriber.wants(topic):
                subscriber.offer(event.seq, text)

    @property
    def first_seq(self) -> int:
        """``seq`` of the oldest event in the memory buffer (``last_seq + 1`` when it is empty)."""
        return self.replay[0][0] if self.replay else self.last_seq + 1

    def oldest_available(self) -> int:
        """The oldest seq that can still be replayed (journal, else memory)."""
        if self.journal is not None:
            return self.journal.first_seq or self.first_seq
        return self.first_seq

    def page(self, after: int, topics: set[str], limit: int = PAGE) -> tuple[list[tuple[int, str]], int]:
        """Up to ``limit`` events after ``after`` (filtered by topic) and the seq read up to."""
        first_in_memory = self.first_seq
        if after + 1 >= first_in_memory:
            start = after + 1 - first_in_memory  # seqs in the buffer are contiguous
            raw = list(itertools.islice(self.replay, start, start + limit))
        elif self.journal is not None:
            raw = self.journal.event_texts(after, first_in_memory, limit=limit)
            if not raw:  # a hole the journal could not record (a disk error was logged): skip it
                return [], first_in_memory - 1
        else:
            raw = []
        if not raw:
            return [], after
        everything = Topic.ALL.value in topics
        return [(seq, text) for seq, topic, text in raw
                if topic in topics or (everything and topic not in OPT_IN_TOPICS)], raw[-1][0]

    def subscribe(self, subscriber: Subscriber, since: int | None) -> tuple[str, tuple[int, int] | None]:
        """Register a client; with ``since``, it first catches up on what it missed.

        Returns the replay kind ("none", "full" or "gap") and, for a gap, the
        range that exists nowhere any more. Runs on the loop thread, so no
        event can slip between the catch-up and the live stream.
        """
        self.subscribers[subscriber.client_id] = subscriber
        if since is None:
            return "none", None
        gap = None
        oldest = self.oldest_available()
        if since + 1 < oldest and since < self.last_seq:
            gap = (since + 1, min(oldest - 1, self.last_seq))
            since = gap[1]
        if since < self.last_seq:
            subscriber.cursor = since
            subscriber.catching_up = True
            subscriber.wakeup.set()
        return ("gap" if gap else "full"), gap

    def caught_up(self, subscriber: Subscriber) -> bool:
        """Switch a catching-up client to the live stream once nothing is left to read."""
        if subscriber.cursor >= self.last_seq:
            subscriber.catching_up = False
        return not subscriber.catching_up

    def replay_since(self, since: int, topics: Iterable[str], limit: int,
                     max_bytes: int = 4 << 20) -> tuple[list[str], tuple[int, int] | None, int]:
        """Events after ``since`` for the ``replay`` command: one page of texts, the gap, and the cursor.

        A page holds at most ``limit`` events and about ``max_bytes`` of text
        (at least one event); the cursor is the ``since`` of the next page,
        and more follow while it is below ``last_seq``.
        """
        topics = set(topics)
        gap = None
        oldest = self.oldest_available()
        if since + 1 < oldest and since < self.last_seq:
            gap = (since + 1, min(oldest - 1, self.last_seq))
            since = gap[1]
        texts: list[str] = []
        size = 0
        cursor = since
        while len(texts) < limit and cursor < self.last_seq and size < max_bytes:
            items, read_to = self.page(cursor, topics, min(PAGE, limit - len(texts)))
            for seq, text in items:
                if texts and size + len(text) > max_bytes:
                    return texts, gap, cursor
                texts.append(text)
                size += len(text)
                cursor = seq
            cursor = read_to
        return texts, gap, cursor

    def unsubscribe(self, client_id: str) -> None:
        """Stop sending events to ``client_id`` (loop thread); unknown ids are ignored."""
        self.subscribers.pop(client_id, None)
