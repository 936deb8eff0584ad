"""Fan events out to clients: serialise once, journal, buffer for replay, never block.

Events arrive from the worker's reader thread. They are queued and handed to
the event loop in batches (one wake-up per batch, not per event), serialised
to JSON once, written to the journal in one transaction per batch (so nothing
reaches a client that is not on disk), appended to the replay buffer, and put
on every subscribed client's bounded outbox. A client whose outbox overflows
is cut off (it is told why) so it can never slow the others, the server or
the experiment. A client asking for events older than the in-memory buffer
gets them from the journal.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from session.events import Event
from session.journal import Journal

from ..protocol import TOPIC_OF_EVENT, Topic, event_json

log = logging.getLogger("liaison.server")

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

    def wants(self, topic: str) -> bool:
        return Topic.ALL.value in self.topics or topic in self.topics

    def offer(self, seq: int, text: str) -> None:
        if self.overflowed:
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
                 journal: Journal | None = None, replay_limit: int = 25_000) -> None:
        self.loop = loop
        self.replay: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=replay_size)
        self.subscribers: dict[str, Subscriber] = {}
        self.journal = journal
        self.replay_limit = replay_limit  # most events replayed to one client; older ones are a gap
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
        self.replay.append((event.seq, topic, text))
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

    def _replay_items(self, since: int, topics: set[str]) -> tuple[list[tuple[int, str, str]], tuple[int, int] | None]:
        """What a client that saw up to ``since`` missed, and the range it cannot have.

        At most ``replay_limit`` events are replayed; a client further behind
        gets the newest ones and a gap notice for the rest. Events that left
        the memory buffer come from the journal.
        """
        start = max(since, self.last_seq - self.replay_limit)
        gap = (since + 1, start) if start > since else None
        first_in_memory = self.first_seq
        items: list[tuple[int, str, str]] = []
        if start + 1 < first_in_memory:
            if self.journal is not None:
                items = self.journal.event_texts(start, first_in_memory, topics)
            else:
                gap = (since + 1, first_in_memory - 1)
        everything = Topic.ALL.value in topics
        items += [item for item in self.replay if item[0] > start and (everything or item[1] in topics)]
        return items, gap

    def subscribe(self, subscriber: Subscriber, since: int | None) -> tuple[str, tuple[int, int] | None]:
        """Register and queue what the client missed since ``since``.

        Returns the replay kind ("none", "full" or "gap") and, for a gap, the
        missing range. Runs on the loop thread, so no event can slip between
        the replay and the live stream.
        """
        self.subscribers[subscriber.client_id] = subscriber
        if since is None:
            return "none", None
        items, gap = self._replay_items(since, subscriber.topics)
        for seq, _topic, text in items:
            subscriber.offer(seq, text)
        return ("gap" if gap else "full"), gap

    def replay_since(self, since: int, topics: Iterable[str]) -> tuple[list[str], tuple[int, int] | None]:
        items, gap = self._replay_items(since, set(topics))
        return [text for _, _, text in items], gap

    def unsubscribe(self, client_id: str) -> None:
        self.subscribers.pop(client_id, None)
