"""Logging that never writes a token: websockets logs every frame at debug level, auth included."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r'("token"\s*:\s*")[^"]*(")|(Bearer\s+)\S+')


class TokenRedactor(logging.Filter):
    """Replaces token values in a record's message with ``***`` (the record still goes out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace token values in the record's message with ``***``; always True (the record is kept)."""
        message = record.getMessage()
        if "token" in message or "Bearer" in message:
            record.msg = _TOKEN.sub(lambda m: f"{m.group(1)}***{m.group(2)}" if m.group(1) else f"{m.group(3)}***",
                                    message)
            record.args = ()
        return True


def redact_tokens() -> None:
    """Install the redactor on every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TokenRedactor) for f in handler.filters):
            handler.addFilter(TokenRedactor())
