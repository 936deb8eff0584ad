"""Subprocess: the floor, a bare ``websockets`` asyncio echo server on 127.0.0.1.

Same library, options (no compression) and process layout (a server process, the
clients in the bench process) as the two real servers, doing nothing but echo.
Prints ``BENCH-READY {json}``; a line on stdin (or EOF) stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write("\nBENCH-READY " + json.dumps({"port": port, "pid": os.getpid(),
                                                         "url": f"ws://127.0.0.1:{port}/"}) + "\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
