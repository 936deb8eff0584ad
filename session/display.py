"""Give headless machines a display: start a private Xvfb when there is none.

Servers and CI have no screen, but PsychoPy needs a real OpenGL window. With
``headless=True`` we start ``Xvfb`` on a free display number (Xvfb picks it
via ``-displayfd``) and point ``DISPLAY`` at it for this process and its
children. The server stops with the process.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import subprocess
import time

_started: subprocess.Popen | None = None


class DisplayError(RuntimeError):
    """No display can be provided: Xvfb is missing or did not start in time."""

    pass


def has_display() -> bool:
    """Whether ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set (not whether the server behind it answers)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start_xvfb(size: tuple[int, int] = (1280, 1024), depth: int = 24, timeout: float = 10.0) -> str:
    """Start Xvfb, set ``DISPLAY`` and return it, e.g. ``':99'``."""
    global _started
    binary = shutil.which("Xvfb")
    if binary is None:
        raise DisplayError(
            "no display and Xvfb is not installed; install it (Debian: apt-get install xvfb "
            "libgl1-mesa-dri libglu1-mesa) or run on a machine with a screen"
        )
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [binary, "-displayfd", str(write_fd), "-screen", "0", f"{size[0]}x{size[1]}x{depth}",
         "-nolisten", "tcp", "-noreset", "+extension", "GLX"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own scheduling group, so session.priority can raise it alone
    )
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    number = b""
    with os.fdopen(read_fd, "rb", buffering=0) as reader:
        while not number.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([reader], [], [], remaining)[0]:
                break
            chunk = reader.read(1)
            if not chunk:
                break
            number += chunk
    if not number.strip().isdigit():
        proc.kill()
        raise DisplayError(f"Xvfb did not start (exit code {proc.poll()})")
    display = f":{number.decode().strip()}"
    os.environ["DISPLAY"] = display
    _started = proc
    atexit.register(stop_xvfb)
    return display


def xvfb_pid() -> int | None:
    """The pid of the Xvfb this process started, while it runs (None otherwise)."""
    return _started.pid if _started is not None and _started.poll() is None else None


def stop_xvfb() -> None:
    """Stop the Xvfb this process started (killed if it has not ended in 5 s); no-op otherwise."""
    global _started
    if _started is not None and _started.poll() is None:
        _started.terminate()
        try:
            _started.wait(5)
        except subprocess.TimeoutExpired:
            _started.kill()
    _started = None


def ensure_display(headless: bool | None = None) -> str | None:
    """Make sure windows can open. ``headless=None`` starts Xvfb only when there is no display."""
    if _started is not None and _started.poll() is None:
        return os.environ.get("DISPLAY")  # this process's Xvfb already serves
    if headless or (headless is None and not has_display()):
        if headless or not has_display():
            return start_xvfb()
    return os.environ.get("DISPLAY")
