"""Who may connect, and as what: the controller token, the observer token, or none on loopback.

A controller token grants either role (a controller may watch). An observer
token grants only ``observer``, so a link handed to a watcher cannot command.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

CONTROLLER, OBSERVER = "controller", "observer"


@dataclass(frozen=True)
class Credentials:
    """The server's tokens; ``no_auth`` lets anyone in as any role (loopback only, see ServerConfig)."""

    token: str | None
    observer_token: str | None = None
    no_auth: bool = False

    def role_for(self, given: str | None, wanted: str) -> str | None:
        """The role ``given`` grants when ``wanted`` is asked for, or None if it grants nothing.

        Asking for ``controller`` with an observer token grants nothing: the
        client learns at once that its token cannot command.
        """
        if self.no_auth:
            return wanted
        if given is None:
            return None
        if self.token and _same(given, self.token):
            return wanted
        if self.observer_token and _same(given, self.observer_token):
            return OBSERVER if wanted == OBSERVER else None
        return None

    def can_read(self, given: str | None) -> bool:
        """Whether ``given`` may read (downloads): either token."""
        return self.role_for(given, OBSERVER) is not None

    def can_control(self, given: str | None) -> bool:
        """Whether ``given`` may change things (uploads): the controller token only."""
        return self.role_for(given, CONTROLLER) == CONTROLLER

    @property
    def method(self) -> str:
        """What ``hello.auth`` says: ``token`` or ``none``."""
        return "none" if self.no_auth else "token"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    return header[7:]
