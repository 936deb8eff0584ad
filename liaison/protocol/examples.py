"""Example messages for the docs, built through the models so every example is valid by construction."""

from __future__ import annotations

from .commands import COMMANDS, REQUEST_MODELS
from .encoding import dumps
from .errors import CloseCode, ErrorCode
from .messages import Alert, Auth, ErrorBody, EventMessage, Gap, Goodbye, Hello, Reply, Welcome
from .parsing import MAX_MESSAGE_BYTES


def example_messages() -> dict[str, str]:
    """One valid example of every message type (two for replies), as compact JSON via the models."""
    examples = [
        Hello(server="liaison 0.1.0", session_id="5f2c9a", auth="token", max_message_bytes=MAX_MESSAGE_BYTES),
        Auth(token="s3cret-token", role="controller", since=None, client="lab-laptop"),
        Welcome(role="controller", client_id="a1b2c3d4", state={"status": "idle", "run_id": None},
                last_seq=128, replay="none"),
        REQUEST_MODELS["run"].model_validate({"id": 1, "args": COMMANDS["run"].example_args}),
        Reply(id=1, ok=True, result={"run_id": "20250101T120000-stroop_lite-a1b2c3", "key": "stroop_lite"}),
        Reply(id=2, ok=False, error=ErrorBody(code=ErrorCode.CONFLICT, message="nothing is running")),
        EventMessage(seq=129, event="run_paused", time=1735732800.25,
                     data={"run_id": "20250101T120000-stroop_lite-a1b2c3", "key": "stroop_lite",
                           "latency": 0.012}),
        Gap(from_seq=1, to_seq=99, reason="these events are no longer stored"),
        Goodbye(code=int(CloseCode.SLOW_CONSUMER), reason="client too slow: more than 50000 events queued"),
        Alert(code="storage_failed", message="the server cannot write its journal",
              details={"error": "OperationalError: database or disk is full", "first_undelivered_seq": 4711}),
    ]
    texts = {message.type: dumps(message) for message in examples if message.type != "reply"}
    texts["reply"] = dumps(examples[4])
    texts["reply_error"] = dumps(examples[5])
    return texts


def example_request(cmd: str) -> str:
    """The JSON text of a request for ``cmd`` with its documented example arguments (``id`` 1).

    The arguments are the args model's ``example_args``. Raises KeyError for a
    command that does not exist.
    """
    return dumps(REQUEST_MODELS[cmd].model_validate({"id": 1, "args": COMMANDS[cmd].example_args}))


def example_error_reply() -> str:
    """The JSON text of a typical error reply (``invalid_args`` with validation details), for the docs."""
    reply = Reply(id=7, ok=False, error=ErrorBody(
        code=ErrorCode.INVALID_ARGS, message="invalid arguments for 'skip_trials'",
        details=[{"type": "int_type", "loc": ["args", "n"], "msg": "Input should be a valid integer",
                  "input": "two"}]))
    return dumps(reply)


__all__ = ["example_error_reply", "example_messages", "example_request"]
