"""The controller's command load: cheap commands at a steady rate, their round trips timed."""

from __future__ import annotations

import asyncio
import itertools
import time

from .peer import Peer

COMMANDS = ("ping", "state", "get_exp_info")


class CommandLoad:
    """Sends ``ping``, ``state`` and ``get_exp_info`` in turn at ``rate`` per second through one peer.

    Round trips of successful replies are kept per command, for the whole soak
    (``rtt_all``) and for the current sampling window (:meth:`take_window`);
    failures and replies missing after 30 s are counted, never raised.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sent = 0
        self.errors: list[str] = []
        self.timeouts = 0
        self.rtt_all: dict[str, list[float]] = {cmd: [] for cmd in COMMANDS}
        self._window: dict[str, list[float]] = {cmd: [] for cmd in COMMANDS}

    def take_window(self) -> dict[str, list[float]]:
        """Round trips (seconds) per command since the last call; the window starts afresh."""
        window, self._window = self._window, {cmd: [] for cmd in COMMANDS}
        return window

    async def run(self, controller: Peer) -> None:
        """Send commands until cancelled or the connection closes (a slow reply resets the pace, no burst)."""
        period = 1.0 / self.rate
        next_at = time.monotonic()
        for i in itertools.count():
            cmd = COMMANDS[i % len(COMMANDS)]
            self.sent += 1
            try:
                reply, rtt = await controller.request(cmd, timeout=30)
                if reply.get("ok"):
                    self._window[cmd].append(rtt)
                    self.rtt_all[cmd].append(rtt)
                else:
                    self.errors.append(f"{cmd}: {reply.get('error')}")
            except (asyncio.TimeoutError, TimeoutError):
                self.timeouts += 1
            except ConnectionError as exc:
                self.errors.append(f"{cmd}: {exc}")
                return
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -1.0:  # a slow reply: keep the pace from now on instead of bursting
                next_at = time.monotonic()
            await asyncio.sleep(max(0.0, delay))
