"""Plain HTTP on the WebSocket port: the dashboard's files, health, run downloads.

Runs in websockets' ``process_request`` hook, before any upgrade. It also
checks the Origin of browser WebSocket handshakes: same origin as the page,
or listed in ``allowed_origins``; anything else is refused with 403.
Downloads need ``Authorization: Bearer <token>``; tokens never go in URLs, so
they never reach a log.
"""

from __future__ import annotations

import hmac
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

if TYPE_CHECKING:
    from .app import LiaisonServer

SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy",
     "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
     "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"),
]


def respond(status: int, reason: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
            extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       *SECURITY_HEADERS, *(extra or [])])
    return Response(status, reason, headers, body)


def text(status: int, reason: str, message: str) -> Response:
    return respond(status, reason, (message + "\n").encode(), extra=[("Cache-Control", "no-store")])


def inside(base: Path, relative: str) -> Path | None:
    """``base/relative`` resolved, or None if it escapes ``base``."""
    base = base.resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        return None
    return target


def origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class HttpFront:
    def __init__(self, server: "LiaisonServer") -> None:
        self.server = server

    def __call__(self, connection, request) -> Response | None:
        headers = request.headers
        if headers.get("Upgrade", "").lower() == "websocket":
            origin = headers.get("Origin")
            if origin is not None and not origin_allowed(origin, headers.get("Host"),
                                                         self.server.config.allowed_origins):
                return text(403, "Forbidden", f"origin {origin} is not allowed")
            return None
        path = unquote(urlsplit(request.path).path)
        if path == "/healthz":
            return text(200, "OK", "ok")
        if path.startswith("/api/runs/"):
            return self.download(path, headers)
        return self.static(path)

    def authorised(self, headers) -> bool:
        config = self.server.config
        if config.no_auth:
            return True
        given = headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return False
        return hmac.compare_digest(given[7:].encode(), config.token.encode())

    def download(self, path: str, headers) -> Response:
        """``/api/runs/<run_id>/files/<relative path>`` from that run's folder."""
        if not self.authorised(headers):
            return text(401, "Unauthorized", "send Authorization: Bearer <token>")
        parts = path.split("/", 5)  # '', api, runs, run_id, files, rest
        if len(parts) < 6 or parts[4] != "files" or not parts[5]:
            return text(404, "Not Found", "use /api/runs/<run_id>/files/<file>")
        record = self.server.runs.get(parts[3])
        if record is None or not record.get("data_dir"):
            return text(404, "Not Found", f"no run {parts[3]}")
        target = inside(Path(record["data_dir"]), parts[5])
        if target is None or not target.is_file():
            return text(404, "Not Found", f"no file {parts[5]} in run {parts[3]}")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".csv":
            kind = "text/csv; charset=utf-8"
        return respond(200, "OK", target.read_bytes(), kind, [
            ("Cache-Control", "no-store"),
            ("Content-Disposition", f'attachment; filename="{target.name}"'),
        ])

    def static(self, path: str) -> Response:
        web = self.server.config.web_dir
        if web is None or not web.is_dir():
            return text(404, "Not Found", "no dashboard installed")
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        target = inside(web, relative)
        if target is None or not target.is_file():
            return text(404, "Not Found", "not found")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        cache = "no-cache" if target.suffix == ".html" else "public, max-age=300"
        return respond(200, "OK", target.read_bytes(), kind, [("Cache-Control", cache)])
