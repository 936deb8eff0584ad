"""The Liaison WebSocket protocol: pydantic models are its single source of truth.

Pure code (no I/O, no PsychoPy, no websockets): the server, the clients, the
JSON Schema and the Markdown docs (``docs/protocol.md``) all derive from it.
"""

from .commands import (
    COMMANDS, CONTROLLER_COMMANDS, MAX_VALUE_DEPTH, OBSERVER_COMMANDS, REQUEST_ADAPTER, REQUEST_MODELS,
    TOPIC_OF_EVENT, CommandArgs, Request, RequestUnion, Topic, required_role,
)
from .encoding import RawResult, dumps, event_json, event_message, reply_error, reply_ok, reply_text
from .errors import (
    CLOSE_DESCRIPTIONS, ERROR_DESCRIPTIONS, CloseCode, ErrorCode, ProtocolError, error_code_for,
)
from .jsonable import errors_jsonable, to_jsonable
from .messages import (
    EVENT_DATA_MODELS, PROTOCOL_VERSION, SERVER_MESSAGES, Alert, Auth, Envelope, ErrorBody, EventMessage, Gap,
    Goodbye, Hello, Reply, RequestId, ServerMessage, Welcome,
)
from .parsing import MAX_DEPTH, MAX_MESSAGE_BYTES, parse_client_message, parse_server_message

__all__ = [
    "CLOSE_DESCRIPTIONS", "COMMANDS", "CONTROLLER_COMMANDS", "ERROR_DESCRIPTIONS", "EVENT_DATA_MODELS",
    "MAX_DEPTH", "MAX_MESSAGE_BYTES", "MAX_VALUE_DEPTH", "OBSERVER_COMMANDS", "PROTOCOL_VERSION",
    "REQUEST_ADAPTER", "REQUEST_MODELS", "SERVER_MESSAGES", "TOPIC_OF_EVENT",
    "Alert", "Auth", "CloseCode", "CommandArgs", "Envelope", "ErrorBody", "ErrorCode", "EventMessage", "Gap",
    "Goodbye", "Hello", "ProtocolError", "RawResult", "Reply", "Request", "RequestId", "RequestUnion",
    "ServerMessage", "Topic", "Welcome",
    "dumps", "error_code_for", "errors_jsonable", "event_json", "event_message", "parse_client_message",
    "parse_server_message", "reply_error", "reply_ok", "reply_text", "required_role", "to_jsonable",
]
