"""Fan events out to clients: serialise once, buffer for replay, never block.

Events arrive from the worker's reader thread. They are queued and handed to
the event loop in batches (one wake-up per batch, not per event), serialised
to JSON once, appended to the replay buffer, and put on every subscribed
client's bounded outbox. A client whose outbox overflows is cut off (it is
told why) so it can never slow the others, the server or the experiment.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from session.events import Event

from ..protocol import TOPIC_OF_EVENT, Topic, event_json


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

    def __init__(self, loop: asyncio.AbstractEventLoop, replay_size: int = 100_000) -> None:
        self.loop = loop
        self.replay: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=replay_size)
        self.subscribers: dict[str, Subscriber] = {}
        self.last_seq = 0
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
            self.dispatch(incoming.popleft())

    def dispatch(self, event: Event) -> None:
        topic = TOPIC_OF_EVENT.get(event.type, Topic.STATUS).value
        text = event_json(event)
        self.last_seq = event.seq
        self.replay.append((event.seq, topic, text))
        for listener in self.listeners:
            listener(event)
        for subscriber in list(self.subscribers.values()):
            if subscriber.wants(topic):
                subscriber.offer(event.seq, text)

    @property
    def first_seq(self) -> int:
        return self.replay[0][0] if self.replay else self.last_seq + 1

    def subscribe(self, subscriber: Subscriber, since: int | None) -> tuple[str, tuple[int, int] | None]:
        """Register and queue what the client missed since ``since``.

        Returns the replay kind ("none", "full" or "gap") and, for a gap, the
        missing range. Runs on the loop thread, so no event can slip between
        the replay and the live stream.
        """
        self.subscribers[subscriber.client_id] = subscriber
        if since is None:
            return "none", None
        gap = None
        if since + 1 < self.first_seq:
            gap = (since + 1, self.first_seq - 1)
        for seq, topic, text in self.replay:
            if seq > since and subscriber.wants(topic):
                subscriber.offer(seq, text)
        return ("gap" if gap else "full"), gap

    def replay_since(self, since: int, topics: Iterable[str]) -> tuple[list[str], tuple[int, int] | None]:
        topics = set(topics)
        gap = (since + 1, self.first_seq - 1) if since + 1 < self.first_seq else None
        wanted = [text for seq, topic, text in self.replay
                  if seq > since and (Topic.ALL.value in topics or topic in topics)]
        return wanted, gap

    def unsubscribe(self, client_id: str) -> None:
        self.subscribers.pop(client_id, None)
