"""The fleet service's HTTP side: its page, health, stats, and the checks on every request.

Runs in websockets' ``process_request`` hook like a booth's front. Every
request, page or WebSocket handshake, must name an acceptable ``Host`` (on
loopback: a loopback name, or one listed in ``allowed_hosts``), which defeats
DNS rebinding; a browser's WebSocket handshake must also come from the same
origin as the page (or one listed in ``allowed_origins``). ``/api/stats``
needs ``Authorization: Bearer <token>`` (the controller or the observer token:
reading it changes nothing).
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from websockets.http11 import Response

from ..server.auth import bearer
from ..server.http import inside, origin_allowed, respond, text
from ..resources import web_dir
from .config import LOOPBACK

WEB_DIR = (web_dir() or Path("/nonexistent")) / "fleet"  # the installed package's, or the checkout's
SHARED_FILES = {"favicon.svg": WEB_DIR.parent / "favicon.svg"}


def host_name(host: str) -> str:
    """``Host`` header without its port (IPv6 brackets removed), lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, bound: str, allowed: list[str]) -> bool:
    """Whether a request naming ``host`` may be served by a fleet bound to ``bound``."""
    if not host:
        return False
    name = host_name(host)
    extra = {h.lower() for h in allowed}
    if "*" in extra or name in extra:
        return True
    if bound in LOOPBACK:
        return name in LOOPBACK
    if extra:
        return False
    return True  # bound to a real interface with no list: any name (the token still guards everything)


class FleetFront:
    """``process_request`` for the fleet's server."""

    def __init__(self, settings, stats: Callable[[], dict[str, Any]]) -> None:
        self.settings = settings  # the config's [fleet] table
        self.stats = stats

    def __call__(self, connection, request) -> Response | None:
        settings = self.settings
        headers = request.headers
        hosts = headers.get_all("Host")
        if len(hosts) != 1 or len(headers.get_all("Origin")) > 1:
            return text(400, "Bad Request", "a request names exactly one Host (and at most one Origin)")
        if not host_allowed(hosts[0], settings.host, settings.allowed_hosts):
            return text(421, "Misdirected Request", f"host {hosts[0]!r} is not served here")
        if headers.get("Upgrade", "").lower() == "websocket":
            origin = headers.get("Origin")
            if origin is not None and not origin_allowed(origin, headers.get("Host"), settings.allowed_origins):
                return text(403, "Forbidden", f"origin {origin} is not allowed")
            return None
        path = unquote(urlsplit(request.path).path)
        if path == "/healthz":
            return text(200, "OK", "ok")
        if path == "/api/stats":
            if not self.authorised(headers):
                return text(401, "Unauthorized", "send Authorization: Bearer <token>")
            body = json.dumps(self.stats(), default=str).encode()
            return respond(200, "OK", body, "application/json", [("Cache-Control", "no-store")])
        return self.static(path)

    def authorised(self, headers) -> bool:
        """Whether the request may read: either token (or no_auth)."""
        return self.settings.credentials().can_read(bearer(headers.get("Authorization")))

    def static(self, path: str) -> Response:
        """A file of the fleet page (``/`` is index.html); 404 for anything outside it."""
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        target = SHARED_FILES.get(relative) or inside(WEB_DIR, relative)
        if target is None or not target.is_file():
            return text(404, "Not Found", "not found")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        return respond(200, "OK", target.read_bytes(), kind, [("Cache-Control", "no-cache")])
