"""Checks on where a request comes from: the browser's Origin and the Host it asked for.

``Origin`` stops other sites' pages from opening a WebSocket to the server in
a user's browser. ``Host`` stops DNS rebinding: a page at an attacker's domain
that resolves to 127.0.0.1 sends ``Host: attacker.example``, which is not a
name this server answers to, so it is refused before any handler runs.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
WILDCARDS = {"0.0.0.0", "::", ""}


def host_name(header: str | None) -> str | None:
    """The name in a Host header, lower-case, without port or IPv6 brackets; None if malformed."""
    if not header or len(header) > 300:
        return None
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        return text[1:end]
    name, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not port.isdigit():
        return None
    return name or None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class HostCheck:
    """Which Host names the server answers to.

    Always: IP literals of the bound address (any address when bound to a
    wildcard; loopback addresses when bound to loopback), ``localhost`` when
    bound to loopback or a wildcard, the machine's own host names when bound
    to a wildcard, and every name in ``allowed`` (``--allow-host``; ``*``
    turns the check off).
    """

    def __init__(self, bind: str, allowed: list[str] | None = None) -> None:
        self.bind = bind.strip("[]").lower()
        self.allowed = {name.lower() for name in (allowed or [])}
        bound_ip = _ip(self.bind)
        self.wildcard = self.bind in WILDCARDS
        self.loopback = self.bind in LOOPBACK_NAMES or bool(bound_ip and bound_ip.is_loopback)
        self.names = set(self.allowed)
        if self.loopback or self.wildcard:
            self.names |= LOOPBACK_NAMES
        if self.wildcard:
            hostname = socket.gethostname().lower()
            self.names |= {hostname, hostname.split(".")[0], socket.getfqdn().lower()}
        elif bound_ip is None:
            self.names.add(self.bind)  # bound by name: that name

    def allows(self, header: str | None) -> bool:
        """Whether a request with this Host header may be served."""
        if "*" in self.allowed:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        address = _ip(name)
        if address is None:
            return False
        if self.wildcard:
            return True
        if self.loopback:
            return address.is_loopback
        return name == self.bind


def origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    """Whether a browser page from ``origin`` may open a WebSocket: same origin, or listed."""
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
