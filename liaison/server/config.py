"""Server settings, with safe defaults: loopback only, token required, Host and Origin checked."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass
class ServerConfig:
    """Everything ``liaison serve`` can set; see ``liaison serve --help`` for each option."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # None: generate one at start
    observer_token: str | None = None  # grants the observer role only
    no_auth: bool = False  # only allowed on loopback
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides the bound address's
    data_dir: Path | None = None  # default: ROOT/data
    headless: bool | None = None
    window: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    max_message_bytes: int = 1 << 20
    client_queue_limit: int = 50_000  # queued events before a client counts as too slow
    client_buffer_bytes: int = 16 << 20  # queued events and replies, in bytes, before it does
    max_in_flight: int = 1024  # one connection's requests not yet answered; more get `busy`
    max_reply_bytes: int = 4 << 20  # a `replay` page holds about this much
    auth_timeout: float = 10.0
    ping_interval: float | None = 20.0
    replay_size: int = 100_000  # recent events kept in memory (older ones are read from the journal)
    replay_bytes: int = 32 << 20  # ... and at most this much of their text
    web_dir: Path | None = None
    durable: bool = False  # fsync the journal on every batch (survives power loss, costs ~ms)
    clock: str = "float"  # session clock: float | iso | strftime format, like psychopy.session.Session(clock=)
    recovery_wait: float = 30.0  # seconds to let an orphaned worker finish saving before recovery
    plugins: list[Any] = field(default_factory=list)  # "NAME[:k=v,...]" or {"name", "options"} (liaison.plugins)
    # TLS (see tls.py): None = on off loopback, off on loopback; True forces it; False needs accept_plaintext
    # off loopback. Without tls_cert/tls_key a self-signed certificate is made once per data folder.
    tls: bool | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    accept_plaintext: bool = False
    max_upload_bytes: int = 200 << 20  # `liaison push`: the largest experiment archive accepted
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
        if self.observer_token is not None and self.observer_token == self.token:
            raise ValueError("the observer token must differ from the controller token")

    @property
    def auth_method(self) -> str:
        """``none`` with ``no_auth`` (loopback only), else ``token``; announced in ``hello``."""
        return "none" if self.no_auth else "token"
