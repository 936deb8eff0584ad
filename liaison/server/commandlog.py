"""The audit trail: every command a client sends, with who sent it, in the journal.

A command that changes anything is on disk before it is carried out (with
any reads queued before it). Reads change nothing, so they are journalled
together every ``READS_FLUSH`` seconds: a transaction per ping would double
its round trip. Refused commands are recorded with the reason only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..protocol import OBSERVER_COMMANDS
from ..store.journal import Journal, command_row

log = logging.getLogger("liaison.server")
READS_FLUSH = 0.05  # seconds: how long read-only commands wait to be journalled together


class CommandLog:
    """Batches command rows into the journal from the event loop's thread."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop) -> None:
        self.journal = journal
        self.loop = loop
        self._rows: list[tuple] = []

    def record(self, client, cmd: str, args: dict[str, Any] | None, request_id: Any = None,
               refused: str | None = None) -> None:
        """Journal ``cmd`` from ``client`` (anything with ``client_id``, ``name`` and ``role``)."""
        self._rows.append(command_row(client_id=client.client_id, client_name=client.name, role=client.role,
                                      cmd=cmd, args=args, request_id=request_id, refused=refused))
        if cmd not in OBSERVER_COMMANDS and refused is None:
            self.flush()
            log.info("client %s (%s) -> %s", client.client_id, client.role, cmd)
        elif len(self._rows) == 1:
            self.loop.call_later(READS_FLUSH, self.flush)

    def flush(self) -> None:
        """Write what is queued now (also at shutdown)."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            self.journal.record_commands(rows)
        except Exception:  # noqa: BLE001 - the commands still run; the failure is loud
            log.exception("could not journal %d commands", len(rows))
