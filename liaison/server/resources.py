"""Where the server finds the dashboard's files."""

from __future__ import annotations

from pathlib import Path


def web_dir() -> Path:
    """The dashboard folder (``web/`` beside the packages in a checkout)."""
    return Path(__file__).resolve().parent.parent.parent / "web"
