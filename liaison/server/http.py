"""Plain HTTP on the WebSocket port: the dashboard's files, health, run downloads.

Runs in websockets' ``process_request`` hook, before any upgrade. Every
request must name a Host this server answers to (DNS rebinding), and browser
WebSocket handshakes must come from the same origin as the page or one in
``allowed_origins``. Downloads need ``Authorization: Bearer <token>`` (either
token); tokens never go in URLs, so they never reach a log. Files are read
off the event loop, a few at a time, so a big download never stalls others.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from ..store.runs import RunHistory
from .auth import Credentials, bearer
from .guards import HostCheck, origin_allowed

MAX_PATH = 2048  # characters of a request path
PARALLEL_READS = 4  # downloads read from disk at once

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
    """A complete response with the security headers every answer carries."""
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       *SECURITY_HEADERS, *(extra or [])])
    return Response(status, reason, headers, body)


def text(status: int, reason: str, message: str) -> Response:
    """A plain-text, uncached response of ``message`` with the security headers."""
    return respond(status, reason, (message + "\n").encode(), extra=[("Cache-Control", "no-store")])


def inside(base: Path, relative: str) -> Path | None:
    """``base/relative`` resolved, or None if it escapes ``base`` (or cannot be a path at all)."""
    if "\x00" in relative or len(relative) > MAX_PATH:
        return None
    base = base.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, ValueError):
        return None
    if target != base and base not in target.parents:
        return None
    return target


def attachment(name: str) -> str:
    """A ``Content-Disposition`` for ``name`` (RFC 6266: an ASCII fallback and the UTF-8 original)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name) or "download"
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class HttpFront:
    """The ``process_request`` hook: answers HTTP itself, lets good WebSocket handshakes through."""

    def __init__(self, *, credentials: Credentials, hosts: HostCheck, allowed_origins: list[str],
                 runs: RunHistory, web_dir: Path | None) -> None:
        self.credentials = credentials
        self.hosts = hosts
        self.allowed_origins = allowed_origins
        self.runs = runs
        self.web_dir = web_dir
        self._reads = asyncio.Semaphore(PARALLEL_READS)

    def __call__(self, connection, request):
        headers = request.headers
        hosts = headers.get_all("Host")
        if len(hosts) != 1:
            return text(400, "Bad Request", "exactly one Host header is required")
        if not self.hosts.allows(hosts[0]):
            return text(421, "Misdirected Request", "this server does not answer to that Host name "
                        "(use its address, or start it with --allow-host NAME)")
        if headers.get("Upgrade", "").lower() == "websocket":
            origin = headers.get("Origin")
            if origin is not None and not origin_allowed(origin, headers.get("Host"), self.allowed_origins):
                return text(403, "Forbidden", f"origin {origin} is not allowed")
            return None
        if len(request.path) > MAX_PATH or "\x00" in request.path:
            return text(400, "Bad Request", "malformed path")
        path = unquote(urlsplit(request.path).path)
        if "\x00" in path:
            return text(400, "Bad Request", "malformed path")
        if path == "/healthz":
            return text(200, "OK", "ok")
        if path.startswith("/api/runs/"):
            return self.download(path, headers)
        return self.static(path)

    async def download(self, path: str, headers) -> Response:
        """``/api/runs/<run_id>/files/<relative path>`` from that run's folder."""
        if not self.credentials.can_read(bearer(headers.get("Authorization"))):
            return text(401, "Unauthorized", "send Authorization: Bearer <token>")
        parts = path.split("/", 5)  # '', api, runs, run_id, files, rest
        if len(parts) < 6 or parts[4] != "files" or not parts[5]:
            return text(404, "Not Found", "use /api/runs/<run_id>/files/<file>")
        record = self.runs.get(parts[3])
        if record is None or not record.get("data_dir"):
            return text(404, "Not Found", f"no run {parts[3]}")
        target = inside(Path(record["data_dir"]), parts[5])
        if target is None or not target.is_file():
            return text(404, "Not Found", f"no file {parts[5]} in run {parts[3]}")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".csv":
            kind = "text/csv; charset=utf-8"
        async with self._reads:
            body = await asyncio.get_running_loop().run_in_executor(None, target.read_bytes)
        return respond(200, "OK", body, kind, [
            ("Cache-Control", "no-store"),
            ("Content-Disposition", attachment(target.name)),
        ])

    def static(self, path: str) -> Response:
        """The dashboard file at URL ``path`` (``/`` is ``index.html``), or a 404.

        Nothing outside ``web_dir`` is ever served; HTML is ``no-cache``, the rest cached 5 minutes.
        Reads the file on the loop thread (dashboard files are small).
        """
        web = self.web_dir
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
