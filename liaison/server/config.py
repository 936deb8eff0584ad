"""Server settings, with safe defaults: loopback only, token required."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class ServerConfig:
    root: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # None: generate one at start
    no_auth: bool = False  # only allowed on loopback
    allowed_origins: list[str] = field(default_factory=list)
    data_dir: Path | None = None  # default: ROOT/data
    headless: bool | None = None
    window: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    max_message_bytes: int = 1 << 20
    client_queue_limit: int = 50_000  # queued events before a client counts as too slow
    auth_timeout: float = 10.0
    ping_interval: float | None = 20.0
    replay_size: int = 100_000  # recent events kept in memory (older ones are read from the journal)
    replay_bytes: int = 32 << 20  # ... and at most this much of their text
    abort_grace: float = 2.0
    web_dir: Path | None = None
    durable: bool = False  # fsync the journal on every batch (survives power loss, costs ~ms)
    recovery_wait: float = 30.0  # seconds to let an orphaned worker finish saving before recovery
    priority: str = "high"  # the experiment thread's priority: normal, high or realtime (session.priority)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.data_dir = Path(self.data_dir).resolve() if self.data_dir is not None else self.root / "data"
        if self.no_auth and self.host not in LOOPBACK:
            raise ValueError("--no-auth is only allowed when binding to loopback (127.0.0.1 or ::1)")
        from session.priority import check_level

        check_level(self.priority)
        if not self.no_auth and not self.token:
            self.token = secrets.token_urlsafe(24)

    @property
    def auth_method(self) -> str:
        return "none" if self.no_auth else "token"

    def masked_token(self) -> str:
        """For logs after start-up: enough to recognise, not to use."""
        if not self.token:
            return "-"
        return self.token[:4] + "…" + f"({len(self.token)} chars)"
