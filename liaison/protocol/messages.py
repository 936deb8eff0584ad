"""Handshake and server-to-client messages, and the event payload models.

Every message is a JSON object with ``v`` (protocol version, always 1) and a
``type``. The event payload models are generated from the session's event
dataclasses, so adding a field there changes the protocol's schema and docs
without a second list to keep in step.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model, field_validator, model_validator,
)

from session.events import EVENT_TYPES, Event

from .errors import ErrorCode

PROTOCOL_VERSION = 1
Role = Literal["controller", "observer"]
ReplayKind = Literal["none", "full", "gap"]

# A request id: a string of at most 64 characters or a signed 64-bit integer.
RequestId = Union[
    Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)],
    Annotated[StrictStr, Field(max_length=64)],
]

_ENVELOPE_REQUIRED = ("v", "type")


def _require_envelope(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Mark ``v``, ``type`` (and ``cmd``/``id`` on requests) required in the schema.

    They have Python defaults for convenience, but on the wire they are mandatory.
    """
    wanted = [name for name in (*_ENVELOPE_REQUIRED, "id", "cmd") if name in schema.get("properties", {})]
    rest = [name for name in schema.get("required", []) if name not in wanted]
    schema["required"] = wanted + rest


class Envelope(BaseModel):
    """Fields every protocol message carries."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_require_envelope,
                              json_schema_serialization_defaults_required=True)

    v: Literal[1] = Field(1, description="Protocol version; always 1.")

    @field_validator("v", mode="before")
    @classmethod
    def _exact_version(cls, value: Any) -> Any:
        # Literal[1] alone would accept true and 1.0.
        if type(value) is not int:
            raise ValueError("v must be the integer 1")
        return value


# --- client -> server -----------------------------------------------------------------------


class Auth(Envelope):
    """The client's first message, answering `hello`: its token, role and where to resume.

    Anything else sent first gets an `unauthorized` error and the connection is
    closed with 4009; a wrong token closes it with 4001.
    """

    type: Literal["auth"] = Field("auth", description="Message type.")
    token: Optional[Annotated[StrictStr, Field(max_length=1024)]] = Field(
        None, description="The server's access token; may be null only when `hello.auth` is \"none\".")
    role: Role = Field("controller", description=(
        "\"controller\" may use every command; \"observer\" only reads (see each command's role)."))
    since: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(None, description=(
        "Resume after a disconnect: replay every stored event with `seq` > since before live "
        "events. null: live events only."))
    client: Optional[Annotated[StrictStr, Field(max_length=100)]] = Field(
        None, description="A name for this client, shown in server logs.")


# --- server -> client -----------------------------------------------------------------------


class Hello(Envelope):
    """Sent by the server as soon as the WebSocket opens; the client answers with `auth`."""

    type: Literal["hello"] = Field("hello", description="Message type.")
    protocol: Literal[1] = Field(1, description="Protocol version the server speaks.")
    server: str = Field(description="Server name and version, e.g. \"liaison 0.1.0\".")
    session_id: str = Field(description="Changes when the server restarts; `seq` numbers restart with it.")
    auth: Literal["token", "none"] = Field(description="Whether `auth.token` is required.")
    max_message_bytes: int = Field(description="Largest frame (UTF-8 bytes) the server accepts.")


class Welcome(Envelope):
    """Authentication succeeded: the client's role, a state snapshot and the event position."""

    type: Literal["welcome"] = Field("welcome", description="Message type.")
    role: Role = Field(description="The role granted.")
    client_id: str = Field(description="The server's id for this connection (in logs).")
    state: dict[str, Any] = Field(description=(
        "Snapshot of the session (status, current run, experiments, window, recent runs)."))
    last_seq: int = Field(description="`seq` of the newest event when the snapshot was taken.")
    replay: ReplayKind = Field(description=(
        "\"none\": no `since` given; \"full\": every event after `since` follows; \"gap\": some "
        "are no longer stored, a `gap` message follows saying which."))


class ErrorBody(BaseModel):
    """What went wrong: a stable code for programs, a message for people."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    code: ErrorCode = Field(description="Machine-readable kind of error (see Error codes).")
    message: str = Field(description="Human-readable explanation; wording may change.")
    details: Any = Field(None, description=(
        "Extra data; for `invalid_args` and `invalid_message` a list of "
        "`{type, loc, msg, input, ctx}` problems (pydantic's format)."))


class Reply(Envelope):
    """The answer to one request: `ok` with a `result`, or not ok with an `error`.

    `id` echoes the request's id; it is null only when the message was so broken
    that no id could be read (bad JSON, too large, ...).
    """

    type: Literal["reply"] = Field("reply", description="Message type.")
    id: Optional[RequestId] = Field(description="The request's id, or null if it could not be read.")
    ok: bool = Field(description="Whether the command succeeded.")
    result: Any = Field(None, description="The command's result when ok (any JSON), else null.")
    error: Optional[ErrorBody] = Field(None, description="Why it failed when not ok, else null.")

    @model_validator(mode="after")
    def _ok_xor_error(self) -> "Reply":
        if self.ok and self.error is not None:
            raise ValueError("a successful reply has no error")
        if not self.ok and self.error is None:
            raise ValueError("a failed reply needs an error")
        return self


class EventMessage(Envelope):
    """Something happened in the session. Events are numbered by `seq`, strictly increasing.

    Several events may arrive together as a JSON array in one frame.
    """

    type: Literal["event"] = Field("event", description="Message type.")
    seq: int = Field(ge=0, description="Sequence number, strictly increasing within a server session.")
    event: str = Field(description="Event type, e.g. \"run_started\" (see Events).")
    time: float = Field(description="Wall-clock time the event happened (Unix seconds).")
    data: dict[str, Any] = Field(description="The event's fields (see Events).")


class Gap(Envelope):
    """Events `from_seq`..`to_seq` (inclusive) are lost to this client and will not come."""

    type: Literal["gap"] = Field("gap", description="Message type.")
    from_seq: int = Field(description="First missing `seq`.")
    to_seq: int = Field(description="Last missing `seq`.")
    reason: str = Field(description="Why, e.g. \"these events are no longer stored\".")


class Goodbye(Envelope):
    """Sent just before the server closes the connection on purpose."""

    type: Literal["goodbye"] = Field("goodbye", description="Message type.")
    code: int = Field(description="The WebSocket close code that follows (see Close codes).")
    reason: str = Field(description="Human-readable reason.")


AlertCode = Literal["storage_failed", "storage_restored"]


class Alert(Envelope):
    """Something every client must know at once, outside the event sequence (an alert takes no `seq`).

    `storage_failed`: the server cannot write its journal (e.g. the disk is full). Since a client
    only ever sees what is on disk, no events are delivered from then on, the running experiment
    is stopped (PsychoPy still saves its own files if it can), and `run` is refused with
    `storage_unavailable`. `storage_restored`: the journal can be written again; events flow again
    (the ones that could not be stored are missing from the sequence, and no client saw them).
    """

    type: Literal["alert"] = Field("alert", description="Message type.")
    code: AlertCode = Field(description="What happened.")
    message: str = Field(description="Human-readable explanation.")
    details: dict[str, Any] = Field(default_factory=dict, description=(
        "For `storage_failed`: `error` (the write's failure) and `first_undelivered_seq`."))


SERVER_MESSAGES: tuple[type[Envelope], ...] = (Hello, Welcome, Reply, EventMessage, Gap, Goodbye, Alert)
ServerMessage = Annotated[Union[SERVER_MESSAGES], Field(discriminator="type")]  # type: ignore[valid-type]


# --- event payloads, generated from session.events -------------------------------------------

# Prose for the generated docs only; types, defaults and field lists come from the dataclasses.
EVENT_NOTES: dict[str, str] = {
    "experiment_added": "An experiment was registered and can be run by `key`.",
    "status": "The session's status changed (idle, starting, running, paused, stopping, ...).",
    "run_started": "A run began; `data_dir` is where its data files go.",
    "run_paused": "The running experiment observed a pause request.",
    "run_resumed": "The paused experiment continues.",
    "run_stopping": "A stop was requested; `run_finished` follows when the run has ended.",
    "run_failed": "The run ended with an error; the data recorded until then were saved if possible.",
    "run_recovered": "An interrupted run's rows were rebuilt from the journal into a CSV in its folder.",
    "exp_info_changed": "The experiment info (participant, session, ...) was updated.",
    "data_added": "A value was added to the run's data with `add_data`.",
    "annotation": "A free-text note was added with `annotate`.",
    "plan_changed": "A session plan started, moved to another step, paused, waited, or ended.",
}
FIELD_NOTES_DEVICES = {
    "hardware_response.device": "Name of the session device that responded.",
    "hardware_response.response": "PsychoPy's response class (KeyPress, ButtonResponse, ...).",
    "hardware_response.data": "The response's fields (t, value, duration, channel, name...).",
    "hardware_response.t": "The response's own time stamp, on the device's clock.",
    "hardware_response.session_time": "Seconds on the session clock when the session received it.",
    "hardware_response.run_id": "The run in progress, or null between runs.",
}

FIELD_NOTES: dict[str, str] = {
    "run_id": "Id of the run.",
    "run_id?": "Id of the run; null when the event is not tied to a run.",
    "key": "The experiment's key.",
    "path": "Experiment file, relative to the session root.",
    "kind": "Experiment kind (psyexp or py).",
    "exp_info": "Experiment info: field name to value.",
    "run_finished.exp_info": "Experiment info as the run ended (with any keys the experiment added).",
    "run_failed.exp_info": "Experiment info as the run ended (with any keys the experiment added).",
    "status": "New status: idle, starting, running, paused, stopping (or worker_exited, unavailable, shutting_down).",
    "data_dir": "Folder the run saves its data in.",
    "latency": "Seconds from the request to the experiment observing it.",
    "outcome": "completed, stopped or aborted.",
    "data_files": "Data files the run saved.",
    "duration": "Run length in seconds.",
    "gc_max_pause": "Longest garbage-collector pause that interrupted the run's frames, in seconds.",
    "gc_max_boundary_pause": "Longest collection scheduled between trials (not during frames), in seconds.",
    "error": "What went wrong.",
    "traceback": "Python traceback of the failure.",
    "first_row": "Index of the first row in `rows` within the run.",
    "name": "Name of the value.",
    "value": "The value (any JSON).",
    "text": "The note.",
    "action": "skip or rewind.",
    "n": "Number of trials moved.",
    "run_finished.rows": "Rows of data the run saved.",
    "run_failed.rows": "Rows of data saved before the failure.",
    "run_recovered.rows": "Rows found in the journal and written to the recovered CSV.",
    "reason": "Why the run was interrupted.",
    "timing": "The run's frame timing report: frames, dropped, interval_ms percentiles, worst frames with their "
              "trial (data row), refresh_hz, GC pauses, slow plugin hooks (see README, Frame timing).",
    "timing_ok": "False when the run's frame timing was bad (see `timing_problem`); null if it had no frames.",
    "timing_problem": "What was wrong with the run's frame timing, in words; null when it was fine.",
    "plan_id": "Id of the plan.",
    "plan_changed.name": "The plan's name.",
    "plan_changed.status": "running, pausing, paused, resting, waiting, stopped, finished or cancelled.",
    "cursor": "Index of the step the plan is at (equals `steps` when it has ended).",
    "steps": "Number of steps (runs and breaks) in the plan.",
    "step": "The step at `cursor` (kind, participant, key, status, attempts...), or null.",
    "message": "What just happened, in words.",
    "damage": "What was wrong with the journal, if anything (a torn last write, ...).",
    "data_rows.rows": "New rows (one object per completed trial) since the previous `data_rows`.",
    "plugins": ("Engine plugins' hook accounting for the run, by plugin name: calls, over_budget (calls longer "
                "than budget_ms), over_by_hook, max_ms, total_ms, slowest_hook, errors, disabled. Empty without "
                "plugins."),
    "plugin": "Name the plugin was enabled under (`--plugin NAME`).",
    "hook": "The hook that raised (e.g. routine_started, data_rows), or load.",
    "where": "engine (in the worker, on the experiment's thread) or server.",
}

FIELD_NOTES.update(FIELD_NOTES_DEVICES)
_EXCLUDED_FIELDS = ("seq", "time")


def _docstring(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return None
    return " ".join(doc.split()).replace("``", "`")


def _event_data_model(event_cls: type[Event]) -> type[BaseModel]:
    """A pydantic model of an event's wire ``data``: its dataclass fields minus seq/time."""
    hints = typing.get_type_hints(event_cls)
    definitions: dict[str, Any] = {}
    for f in dataclasses.fields(event_cls):
        if f.name in _EXCLUDED_FIELDS:
            continue
        optional = type(None) in typing.get_args(hints[f.name])
        description = (FIELD_NOTES.get(f"{event_cls.type}.{f.name}")
                       or (optional and FIELD_NOTES.get(f"{f.name}?")) or FIELD_NOTES.get(f.name))
        if f.default is not dataclasses.MISSING:
            info = Field(f.default, description=description)
        elif f.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=f.default_factory, description=description)
        else:
            info = Field(description=description)
        definitions[f.name] = (hints[f.name], info)
    doc = _docstring(event_cls) or EVENT_NOTES.get(event_cls.type) or f"The `{event_cls.type}` event."
    return create_model(  # type: ignore[call-overload]
        f"{event_cls.__name__}Data", __doc__=doc, __module__=__name__,
        __config__=ConfigDict(json_schema_serialization_defaults_required=True),
        **definitions,
    )


EVENT_DATA_MODELS: dict[str, type[BaseModel]] = {
    event_type: _event_data_model(cls) for event_type, cls in EVENT_TYPES.items()
}
