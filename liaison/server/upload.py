"""The deploy channel: a WebSocket at ``/deploy`` that takes experiment archives and rescans.

websockets' HTTP side takes no request bodies, so uploads travel on their
own WebSocket (never the control connection: a big archive must not hold up
commands and events). The first message authenticates with the token, as on
the control connection; uploading changes the session root, so it is for
token holders only and every push is journalled.

    client: {"type": "push", "token": T, "name": "stroop", "size": N, "replace": false}
    server: {"type": "ready", "chunk_bytes": C}
    client: N bytes in binary messages of at most C bytes
    server: {"type": "done", "result": {"folder", "files", "bytes", "experiments", "added", ...}}

    client: {"type": "rescan", "token": T}
    server: {"type": "done", "result": {"added": [...], "experiments": n}}

Any refusal is ``{"type": "error", "code": ..., "message": ...}`` and the end of the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from .auth import Credentials
from .commandlog import CommandLog
from .deploy import DeployError, Limits, check_name, check_root, check_target, unpack
from .link import SessionLink

log = logging.getLogger("liaison.server")
DEPLOY_PATH = "/deploy"
CHUNK_BYTES = 1 << 20  # under the server's frame limit (4 x max_message_bytes)
CHUNK_TIMEOUT = 60.0  # seconds without a byte before an upload is given up
BUSY_STATUSES = ("starting", "running", "paused", "stopping")


@dataclass
class Uploader:
    """Who pushed, for the journal (the same fields a control connection records)."""

    client_id: str
    name: str = "deploy"
    role: str = "controller"


async def send(ws, **message: Any) -> None:
    """One JSON message on the deploy channel."""
    await ws.send(json.dumps(message))


@dataclass
class DeployChannel:
    """What the deploy channel needs: where experiments go, who may push, the journal, the worker."""

    root: Path
    data_dir: Path
    credentials: Credentials
    commands: CommandLog
    link: SessionLink
    auth_timeout: float = 10.0
    max_upload_bytes: int = 200 << 20

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()  # one deploy at a time: two uploads of one name must not race for its folder

    async def serve(self, ws) -> None:
        """Handle one connection to ``/deploy``; errors are answered, never raised."""
        try:
            await self._serve(ws)
        except DeployError as error:
            try:
                await send(ws, type="error", code=error.code, message=error.message)
                await ws.close(1008 if error.code in ("unauthorized", "forbidden") else 1000, error.code)
            except ConnectionClosed:
                pass
        except ConnectionClosed:
            pass

    async def _serve(self, ws) -> None:
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self.auth_timeout))
        except (asyncio.TimeoutError, TimeoutError):
            raise DeployError("unauthorized", f"no request within {self.auth_timeout:g} s") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            raise DeployError("invalid_json", "the first message must be a JSON object") from None
        if not isinstance(first, dict):
            raise DeployError("invalid_message", "the first message must be a JSON object")
        token = first.get("token")
        if not self.credentials.can_control(token if isinstance(token, str) else None):
            log.warning("deploy: authentication failed")
            raise DeployError("unauthorized", "missing or wrong token (deploying needs the controller token)")
        actor = Uploader(client_id=secrets.token_hex(4))
        kind = first.get("type")
        if kind == "rescan":
            self.commands.record(actor, "rescan", {})
            result = await self.link.call("rescan", 120)
            await send(ws, type="done", result=result)
            return
        if kind != "push":
            raise DeployError("invalid_message", "the first message must be of type push or rescan")
        name, size, replace = first.get("name"), first.get("size"), bool(first.get("replace", False))
        check_name(name if isinstance(name, str) else "")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise DeployError("invalid_args", "size must be the archive's length in bytes (a positive integer)")
        if size > self.max_upload_bytes:
            raise DeployError("too_large", f"the archive has {size} bytes; this server takes at most "
                                           f"{self.max_upload_bytes} (serve with a larger --max-upload-mb)")
        check_root(self.root, self.data_dir)
        check_target(self.root, name, replace=replace, in_use=await self.folder_in_use(name))  # before the bytes
        self.commands.record(actor, "push", {"name": name, "size": size, "replace": replace})
        async with self._lock:
            archive = await receive(ws, size, self.data_dir / "uploads")
            try:
                in_use = await self.folder_in_use(name)
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, lambda: unpack(
                    archive, self.root, name, Limits.for_upload(self.max_upload_bytes), replace=replace,
                    in_use=in_use))
            finally:
                archive.unlink(missing_ok=True)
        log.info("deploy: %s/ unpacked (%d files, %d bytes)", name, result["files"], result["bytes"])
        rescanned = await self.link.call("rescan", 120)  # experiment_added for each new one
        result["added"] = rescanned["added"]
        await send(ws, type="done", result=result)

    async def folder_in_use(self, name: str) -> bool:
        """True if the run in progress (if any) is of an experiment inside ``ROOT/name``."""
        state = await self.link.call("state", 30)
        if state.get("status") not in BUSY_STATUSES:
            return False
        paths = {e["key"]: e["path"] for e in state.get("experiments", [])}
        path = paths.get(state.get("key"), "")
        return path.split("/", 1)[0] == name


async def receive(ws, size: int, folder: Path) -> Path:
    """The upload's bytes into a private file in the data folder (never the root)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(8)}.zip"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            await send(ws, type="ready", chunk_bytes=CHUNK_BYTES)
            while received < size:
                try:
                    chunk = await asyncio.wait_for(ws.recv(), CHUNK_TIMEOUT)
                except (asyncio.TimeoutError, TimeoutError):
                    raise DeployError("invalid_message", f"no data for {CHUNK_TIMEOUT:g} s; upload abandoned") from None
                if isinstance(chunk, str):
                    raise DeployError("invalid_message", "archive data must be sent as binary messages")
                received += len(chunk)
                if received > size:
                    raise DeployError("invalid_args", f"more than the announced {size} bytes arrived")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
