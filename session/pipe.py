"""The pipe between a worker and its host: message kinds and their framing, without I/O.

Both directions carry pickled tuples, each framed as a 4-byte big-endian
length and the pickle. Encoding and decoding are pure functions of bytes, so
the child's blocking reader, the host's reader thread and the host's event
loop all share one decoder (:class:`FrameDecoder`), and a writer can queue
whole frames without ever blocking.

Messages:
  host -> child  ``(request_id, method, kwargs)`` (the first message is the
                 :class:`~session.worker.WorkerConfig` itself)
  child -> host  ``("reply", request_id, ok, value)`` | ``("event", Event)``
                 | ``("ready", info)`` | ``("failed", error)``
                 | ``("batch", [message, ...])`` (a burst written at once)
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from typing import Any

from .events import Event

HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30  # a frame claiming more is a corrupt stream, not a message

REPLY, EVENT, READY, FAILED, BATCH = "reply", "event", "ready", "failed", "batch"


class PipeCorrupt(Exception):
    """The byte stream cannot be framed any more (a length beyond ``MAX_FRAME``)."""


def encode(message: Any) -> bytes:
    """One frame: length and pickle. Unpicklable values inside events travel as their ``repr``."""
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an experiment stored something unpicklable in its data
        payload = pickle.dumps(_sanitised(message), protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def _sanitised(value: Any) -> Any:
    if isinstance(value, Event):  # its fields only (``type`` is a read-only class variable)
        for item in dataclasses.fields(value):
            setattr(value, item.name, _sanitised(getattr(value, item.name)))
        return value
    if isinstance(value, dict):
        return {str(k): _sanitised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_sanitised(v) for v in value)
    try:
        pickle.dumps(value)
        return value
    except Exception:  # noqa: BLE001 - anything pickle refuses travels as its repr
        return repr(value)


class FrameDecoder:
    """Bytes in, messages out: feed whatever a read returned, get the complete messages.

    A frame whose pickle cannot be loaded is skipped (counted in ``skipped``);
    the stream stays framed. A length beyond ``MAX_FRAME`` raises
    :class:`PipeCorrupt`: nothing after it can be trusted.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data`` (any slice of the stream) and return the messages it completes, in order.

        An incomplete frame waits for the next feed. Raises :class:`PipeCorrupt` for a
        length beyond ``MAX_FRAME``; the decoder is unusable after that. Not thread-safe.
        """
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        size_of_buffer = len(buffer)
        while size_of_buffer - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            if size > MAX_FRAME:
                raise PipeCorrupt(f"frame of {size} bytes announced")
            end = start + HEADER.size + size
            if end > size_of_buffer:
                break
            try:
                messages.append(pickle.loads(buffer[start + HEADER.size:end]))
            except Exception:  # noqa: BLE001 - one unreadable message is skipped, not fatal
                self.skipped += 1
            start = end
        if start:
            del buffer[:start]
        return messages


def merge_rows(messages: list[tuple]) -> list[tuple]:
    """Fold consecutive ``data_rows`` events of a run into one (a backlog of rows goes as one event).

    ``data_rows`` means "the rows since the previous one", so contiguous
    rows merge without changing what a client can rebuild, while the
    per-event costs downstream (numbering, JSON, journal, fan-out) are paid once.
    """
    merged: list[tuple] = []
    for message in messages:
        if message[0] == EVENT and message[1].type == "data_rows" and merged:
            previous = merged[-1]
            if previous[0] == EVENT and previous[1].type == "data_rows":
                head, tail = previous[1], message[1]
                if head.run_id == tail.run_id and head.first_row + len(head.rows) == tail.first_row:
                    head.rows = head.rows + tail.rows
                    continue
        merged.append(message)
    return merged
