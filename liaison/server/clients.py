"""Who is connected: one entry per authenticated connection, for snapshots and the `clients` command."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClientInfo:
    """One connected client as others may see it (never its token)."""

    client_id: str
    name: str | None
    role: str
    connected_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        """The client as a JSON-able dict: id, name, role, connection time (never its token)."""
        return {"client_id": self.client_id, "name": self.name, "role": self.role,
                "connected_at": self.connected_at}


class ClientRegistry:
    """The authenticated connections (loop thread only)."""

    def __init__(self) -> None:
        self._clients: dict[str, ClientInfo] = {}

    def add(self, info: ClientInfo) -> None:
        """Record an authenticated connection; replaces any entry with the same ``client_id``."""
        self._clients[info.client_id] = info

    def remove(self, client_id: str) -> None:
        """Forget a connection; unknown ids are ignored, so closing twice is harmless."""
        self._clients.pop(client_id, None)

    def list(self) -> list[dict[str, Any]]:
        """Every connected client, oldest connection first."""
        return [c.describe() for c in sorted(self._clients.values(), key=lambda c: c.connected_at)]

    def __len__(self) -> int:
        return len(self._clients)
