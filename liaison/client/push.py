"""``liaison push``: send an experiment folder to a server, which unpacks it into ``ROOT/<name>/``.

The folder is zipped to a temporary file (what the server would refuse is
refused here first, naming the file: symbolic links; data and cache folders,
which never belong to a deployment, are left out) and sent in chunks over the server's deploy channel (see ``liaison/server/upload.py``),
with the same TLS pinning as the control connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .errors import ConnectionLost, LiaisonError, error_from_body
from .tls import client_context, explain_connect_error

SKIPPED_DIRS = {"__pycache__", "data", ".compiled", ".git", ".svn", ".hg", ".idea", ".vscode"}
SKIPPED_FILES = {".DS_Store", "Thumbs.db"}


def deploy_url(url: str) -> str:
    """The deploy channel of the server at ``url`` (ws://, wss://, http:// or https://)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a server URL (ws://, wss://, http:// or https://)")
    return urlunsplit((scheme, parts.netloc, "/deploy", "", ""))


def zip_folder(folder: Path, target: Path) -> int:
    """Zip ``folder``'s contents (not the folder itself) into ``target``; returns the number of files."""
    folder = folder.resolve()
    count = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            here = Path(dirpath)
            for name in list(dirnames):
                if (here / name).is_symlink():
                    raise LiaisonError(f"{here / name} is a symbolic link; the server refuses links: copy "
                                       "what it points to into the folder instead", code="invalid_args")
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            for name in sorted(filenames):
                path = here / name
                if name in SKIPPED_FILES:
                    continue
                if path.is_symlink():
                    raise LiaisonError(f"{path} is a symbolic link; the server refuses links: copy the file "
                                       "into the folder instead", code="invalid_args")
                archive.write(path, path.relative_to(folder).as_posix())
                count += 1
    return count


async def push_async(url: str, folder: str | os.PathLike, token: str | None, *, name: str | None = None,
                     replace: bool = False, fingerprint: str | None = None, ca_file: str | None = None,
                     timeout: float = 300.0) -> dict[str, Any]:
    """Upload ``folder`` as ``ROOT/<name>/`` (default: the folder's own name); returns the server's result."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LiaisonError(f"{folder} is not a folder", code="invalid_args")
    name = name or folder.resolve().name
    with tempfile.TemporaryDirectory(prefix="liaison-push-") as scratch:
        archive = Path(scratch) / "upload.zip"
        zip_folder(folder, archive)
        size = archive.stat().st_size
        target = deploy_url(url)
        try:
            ws = await connect(target, ssl=client_context(target, fingerprint, ca_file), open_timeout=30,
                               max_size=1 << 20, compression=None)
        except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectionLost(explain_connect_error(target, exc)) from exc
        try:
            await ws.send(json.dumps({"type": "push", "token": token, "name": name, "size": size,
                                      "replace": replace}))
            answer = await _answer(ws, 60)
            chunk = int(answer.get("chunk_bytes", 1 << 20))
            with open(archive, "rb") as source:
                while data := source.read(chunk):
                    await ws.send(data)
            return (await _answer(ws, timeout))["result"]
        finally:
            await ws.close()


async def rescan_async(url: str, token: str | None, *, fingerprint: str | None = None,
                       ca_file: str | None = None) -> dict[str, Any]:
    """Ask the server to search its root again; returns ``{"added": [...], "experiments": n}``."""
    target = deploy_url(url)
    try:
        ws = await connect(target, ssl=client_context(target, fingerprint, ca_file), open_timeout=30)
    except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake) as exc:
        raise ConnectionLost(explain_connect_error(target, exc)) from exc
    try:
        await ws.send(json.dumps({"type": "rescan", "token": token}))
        return (await _answer(ws, 180))["result"]
    finally:
        await ws.close()


async def _answer(ws, timeout: float) -> dict[str, Any]:
    try:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except ConnectionClosed as exc:
        raise ConnectionLost(f"the server closed the deploy connection: {exc}") from exc
    if message.get("type") == "error":
        raise error_from_body(message)
    return message


def push(url: str, folder: str | os.PathLike, token: str | None, **options: Any) -> dict[str, Any]:
    """Blocking :func:`push_async`."""
    return asyncio.run(push_async(url, folder, token, **options))


def rescan(url: str, token: str | None, **options: Any) -> dict[str, Any]:
    """Blocking :func:`rescan_async`."""
    return asyncio.run(rescan_async(url, token, **options))
