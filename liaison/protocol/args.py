"""The base of every command's ``args`` model (its own module so that command groups defined
elsewhere, e.g. the session plans' commands, need not import the command table)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CommandArgs(BaseModel):
    """Base of every command's ``args``: unknown fields are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")
