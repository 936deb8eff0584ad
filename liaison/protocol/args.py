"""The base of every command's ``args`` model (its own module so that command groups defined
elsewhere, e.g. the session plans' commands, need not import the command table)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class CommandArgs(BaseModel):
    """Base of every command's ``args``: unknown fields are errors, not ignored.

    A subclass's docstring is the command's description in the docs and the
    JSON Schema. Two class variables (not fields: they are not in the schema
    and never sent) document the rest of the command in ``docs/protocol.md``:
    ``result_doc`` says what the reply's ``result`` holds (results are not
    validated against it) and ``example_args`` are the arguments of the
    documented example request (validated when the docs are generated).
    """

    model_config = ConfigDict(extra="forbid")

    result_doc: ClassVar[str] = "command-specific JSON."
    example_args: ClassVar[dict[str, Any]] = {}
