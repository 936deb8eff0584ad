"""Python clients for a liaison server: :class:`Client` (blocking) and :class:`AsyncClient`."""

from .aio import AsyncClient, AsyncRun, Event
from .errors import (
    Busy, Conflict, ConnectionLost, ExperimentFailed, Forbidden, InternalError, InvalidArgs, InvalidJson,
    InvalidMessage, LiaisonError, NotFound, RequestTimeout, StorageUnavailable, TooLarge, Unauthorized, UnknownCommand,
)
from .sync import Client, Run

__all__ = [
    "AsyncClient", "AsyncRun", "Busy", "Client", "Conflict", "ConnectionLost", "Event", "ExperimentFailed",
    "Forbidden", "InternalError", "InvalidArgs", "InvalidJson", "InvalidMessage", "LiaisonError", "NotFound",
    "RequestTimeout", "Run", "StorageUnavailable", "TooLarge", "Unauthorized", "UnknownCommand",
]
