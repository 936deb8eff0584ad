"""Fan events out to clients: serialise once, journal, buffer for replay, never block.

Events arrive from the worker's reader thread. They are queued and handed to
the event loop in batches (one wake-up per batch, not per event), serialised
to JSON once, written to the journal in one transaction per batch (so nothing
reaches a client that is not on disk), appended to the replay buffer, and put
on every subscribed client's bounded outbox. A client whose outbox overflows
is cut off (it is told why) so it can never slow the others, the server or
the experiment.

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
from session.journal import Journal

from ..protocol import TOPIC_OF_EVENT, Topic, event_json
from ..protocol.commands import OPT_IN_TOPICS

log = logging.getLogger("liaison.server")
PAGE = 512  # events per catch-up read
ALL = Topic.ALL.value


@dataclass
class Subscriber:
    """A client's view of the event stream: its topics and its outbox."""

    client_id: str
    topics: set[str]
    limit: int
    on_overflow: Callable[["Subscriber"], None]
    outbox: collections.deque = field(default_factory=collections.deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    delivered_seq: int = 0
    catching_up: bool = False  # reading missed events from the buffer/journal, not the outbox
    cursor: int = 0  # last seq handled while catching up

    def wants(self, topic: str) -> bool:
        topics = self.topics
        return topic in topics or (ALL in topics and topic not in OPT_IN_TOPICS)

    def offer(self, seq: int, text: str) -> None:
        if self.overflowed or self.catching_up:  # a catching-up client reads it from the buffer later
            return
        if len(self.outbox) >= self.limit:
            self.overflowed = True
            self.outbox.clear()
            self.on_overflow(self)
            return
        self.outbox.append((seq, text))
        self.wakeup.set()


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
        self.journal_errors = 0
        self.listeners: list[Callable[[Event], None]] = []
        self._incoming: collections.deque[Event] = collections.deque()
        self._scheduled = False
        self._lock = threading.Lock()

    # called from any thread (the worker's reader) -------------------------------
    def push(self, event: Event) -> None:
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
            self._journal(batch)
            for item in batch:
                self._fan_out(*item)

    def dispatch(self, event: Event) -> None:
        """Journal and fan out one event (loop thread)."""
        item = (event, TOPIC_OF_EVENT.get(event.type, Topic.STATUS).value, event_json(event))
        self._journal([item])
        self._fan_out(*item)

    def _journal(self, batch: list[tuple[Event, str, str]]) -> None:
        if self.journal is None:
            return
        try:
            self.journal.append(batch)
        except Exception:  # noqa: BLE001 - a full disk must not silence the session; say so loudly
            self.journal_errors += 1
            log.exception("could not write %d events to the journal (seq %d..%d)", len(batch),
                          batch[0][0].seq, batch[-1][0].seq)

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
        """Oldest event still in memory."""
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

    def replay_since(self, since: int, topics: Iterable[str], limit: int) -> tuple[list[str], tuple[int, int] | None,
                                                                                  bool]:
        """Events after ``since`` for the ``replay`` command: texts, gap, and whether more follow."""
        topics = set(topics)
        gap = None
        oldest = self.oldest_available()
        if since + 1 < oldest and since < self.last_seq:
            gap = (since + 1, min(oldest - 1, self.last_seq))
            since = gap[1]
        texts: list[str] = []
        cursor = since
        while len(texts) < limit and cursor < self.last_seq:
            items, cursor = self.page(cursor, topics, min(PAGE, limit - len(texts)))
            texts += [text for _, text in items]
        return texts, gap, cursor < self.last_seq

    def unsubscribe(self, client_id: str) -> None:
        self.subscribers.pop(client_id, None)
