"""Requests: one strictly typed ``args`` model per command, and event topics.

Strict types (``StrictInt`` and friends) make a wrong JSON type an error
instead of a silent conversion: ``"n": "2"`` is rejected, not read as 2.
Bounds keep one request from asking the session for unbounded work.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, StrictBool, StrictFloat,
    StrictInt, StrictStr, TypeAdapter, create_model,
)

from .args import CommandArgs
from .messages import Envelope, RequestId, _require_envelope
from .simulation import SimulationPolicy


class Topic(str, Enum):
    """Groups of events a client can subscribe to; ``all`` means every event."""

    STATUS = "status"
    RUNS = "runs"
    DATA = "data"
    EXP_INFO = "exp_info"
    ANNOTATIONS = "annotations"
    EXPERIMENTS = "experiments"
    TRIALS = "trials"
    HARDWARE = "hardware"
    TIMING = "timing"
    PLANS = "plans"
    ALL = "all"

    def __str__(self) -> str:
        return self.value


TOPIC_OF_EVENT: dict[str, Topic] = {
    "experiment_added": Topic.EXPERIMENTS,
    "status": Topic.STATUS,
    "run_started": Topic.RUNS,
    "run_paused": Topic.RUNS,
    "run_resumed": Topic.RUNS,
    "run_stopping": Topic.RUNS,
    "run_finished": Topic.RUNS,
    "run_failed": Topic.RUNS,
    "run_recovered": Topic.RUNS,
    "exp_info_changed": Topic.EXP_INFO,
    "data_rows": Topic.DATA,
    "data_added": Topic.DATA,
    "annotation": Topic.ANNOTATIONS,
    "trials_changed": Topic.TRIALS,
    "plugin_error": Topic.STATUS,
    "hardware_response": Topic.HARDWARE,
    "run_timing": Topic.TIMING,
    "plan_changed": Topic.PLANS,
}

# High-volume topics that `all` does not include: a client subscribes to them by name.
OPT_IN_TOPICS: frozenset[str] = frozenset({Topic.HARDWARE.value})

# --- value types ------------------------------------------------------------------------------

MAX_VALUE_DEPTH = 8  # nesting of an add_data value: 1 for [1], 2 for [[1]], ...
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]  # accepts ints too
Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
JsonScalar = Union[StrictBool, StrictInt, FiniteFloat, Annotated[StrictStr, Field(max_length=10_000)], None]
ExpInfoValue = Union[JsonScalar, Annotated[list[JsonScalar], Field(max_length=1000)]]
ExpInfo = Annotated[dict[Name, ExpInfoValue], Field(max_length=200)]
# Keys become parts of file names: a name, never a path (session/names.py has the same rule).
ExperimentKey = Annotated[StrictStr, Field(
    min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
    description="Letters, digits, '_', '.' and '-'; starting with a letter, digit or '_'.")]
TrialCount = Annotated[StrictInt, Field(ge=1, le=10_000)]


def _check_json_value(value: Any) -> Any:
    """Reject values nested deeper than MAX_VALUE_DEPTH and non-finite floats (iteratively)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth + 1 > MAX_VALUE_DEPTH:
                raise ValueError(f"value is nested deeper than {MAX_VALUE_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinite numbers are not JSON")
    return value


BoundedJson = Annotated[JsonValue, BeforeValidator(_check_json_value),
                        Field(description=f"Any JSON value nested at most {MAX_VALUE_DEPTH} levels deep.")]


def _distinct(topics: list[Topic]) -> list[Topic]:
    return list(dict.fromkeys(topics))


Topics = Annotated[list[Topic], Field(min_length=1, max_length=32), AfterValidator(_distinct)]

# --- args models ------------------------------------------------------------------------------


class PingArgs(CommandArgs):
    """Check the connection; the result has the server time, the newest event `seq` and how many clients are connected."""

    result_doc = '`{"pong": true, "time": <server Unix time>, "last_seq": <newest event seq>}`'


class StateArgs(CommandArgs):
    """A snapshot of the session: status, current run, experiments, window, recent runs."""

    result_doc = "The session snapshot, as in `welcome.state`."


class ListExperimentsArgs(CommandArgs):
    """The experiments the session knows: key, path, kind and exp_info defaults."""

    result_doc = "A list of experiment descriptions (key, path, kind, exp_info defaults)."


class AddExperimentArgs(CommandArgs):
    """Register an experiment file (.psyexp or .py) found under the session root."""

    result_doc = "The new experiment's description."
    example_args = {"path": "stroop_lite/stroop_lite.psyexp"}

    path: Annotated[StrictStr, Field(min_length=1, max_length=4096)] = Field(
        description="File path, relative to the session root (absolute paths must lie inside it).")
    key: Optional[ExperimentKey] = Field(
        None, description="Key to register it under; null derives one from the file name.")


class RescanArgs(CommandArgs):
    """Search the session root again and register experiments copied in since (each gets `experiment_added`)."""

    result_doc = '`{"added": [<experiment description>, ...], "experiments": <how many are known now>}`'


class RunArgs(CommandArgs):
    """Start a run of an experiment; fails with `busy` while another run is in progress."""

    result_doc = '`{"run_id": ..., "key": ...}` as soon as the run is queued; its events follow.'
    example_args = {"key": "stroop_lite", "exp_info": {"participant": "p01", "session": "001"}, "seed": 42}

    key: Name = Field(description="The experiment's key (see `list_experiments`).")
    exp_info: Optional[ExpInfo] = Field(None, description=(
        "Experiment info values (participant, session, ...) overriding the defaults; "
        "values are JSON scalars or lists of scalars."))
    seed: Optional[Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]] = Field(
        None, description="Random seed for the run; null picks one (recorded in the run's data).")
    simulate: Optional[SimulationPolicy] = Field(None, description=(
        "Make this a dry run: a simulated participant answers the experiment's response components "
        "with this policy (`{}` for the defaults). The run is marked simulated everywhere."))


class PauseArgs(CommandArgs):
    """Pause the running experiment at its next frame."""

    result_doc = "Seconds between the request and the experiment observing it."


class ResumeArgs(CommandArgs):
    """Resume a paused experiment."""

    result_doc = "Seconds between the request and the experiment observing it."


class StopArgs(CommandArgs):
    """Ask the running experiment to end; its data are saved and `run_finished` follows."""

    result_doc = "Seconds between the request and the experiment observing it."


class AbortArgs(CommandArgs):
    """Stop the run; if it has not ended after `grace` seconds, kill and restart the session worker."""

    result_doc = "What happened: whether the run stopped by itself or the worker was killed."
    example_args = {"grace": 2.0}

    grace: Annotated[FiniteFloat, Field(ge=0, le=60)] = Field(
        2.0, description="Seconds to wait for a clean stop before killing.")


class GetExpInfoArgs(CommandArgs):
    """The current experiment info (of the running run, or the session defaults)."""

    result_doc = "The experiment info object."


class SetExpInfoArgs(CommandArgs):
    """Change experiment info values; takes effect for the running run or the next run."""

    result_doc = "The experiment info after the change."
    example_args = {"values": {"participant": "p02"}}

    values: Annotated[ExpInfo, Field(min_length=1)] = Field(description="Field name to new value.")


class AddDataArgs(CommandArgs):
    """Add a named value to the running experiment's data (and a `data_added` event)."""

    result_doc = "`true`"
    example_args = {"name": "rating", "value": {"score": 4, "tags": ["calm"]}}

    name: Name = Field(description="Column or entry name.")
    value: BoundedJson


class AnnotateArgs(CommandArgs):
    """Add a free-text note to the run's log (and an `annotation` event)."""

    result_doc = "`true`"
    example_args = {"text": "participant asked a question"}

    text: Annotated[StrictStr, Field(min_length=1, max_length=10_000)] = Field(description="The note.")


class TrialsArgs(CommandArgs):
    """The current trial and up to `n` upcoming trials of the running loop."""

    result_doc = '`{"current": <trial or null>, "future": [<trial>, ...]}`'
    example_args = {"n": 3}

    n: TrialCount = Field(1, description="How many future trials to return.")
    start: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = Field(
        0, description="Skip this many future trials before the first returned.")


class SkipTrialsArgs(CommandArgs):
    """Skip the next `n` trials of the running loop."""

    result_doc = "The trial that is now current (or null)."
    example_args = {"n": 2}

    n: TrialCount = Field(1, description="Number of trials to skip.")


class RewindTrialsArgs(CommandArgs):
    """Go back `n` trials in the running loop."""

    result_doc = "The trial that is now current (or null)."
    example_args = {"n": 1}

    n: TrialCount = Field(1, description="Number of trials to go back.")


class SetupWindowArgs(CommandArgs):
    """Change the session window; null or missing fields keep their current value.

    Changing size, screen or fullscr reopens the window (only between runs).
    """

    result_doc = "The window's parameters after the change."
    example_args = {"size": [1024, 768], "fullscr": False, "color": "black", "units": "height"}

    size: Optional[tuple[Annotated[StrictInt, Field(ge=1, le=32_768)],
                         Annotated[StrictInt, Field(ge=1, le=32_768)]]] = Field(
        None, description="[width, height] in pixels.")
    fullscr: Optional[StrictBool] = Field(None, description="Full screen.")
    screen: Optional[Annotated[StrictInt, Field(ge=0, le=64)]] = Field(None, description="Screen number.")
    color: Optional[Annotated[StrictStr, Field(min_length=1, max_length=64)]] = Field(
        None, description="Background colour (a PsychoPy colour name or hex string).")
    units: Optional[Literal["height", "norm", "pix", "deg", "cm"]] = Field(None, description="Default units.")
    frame_rate: Optional[Annotated[FiniteFloat, Field(gt=0, le=1000)]] = Field(
        None, description="Frame rate to report to experiments (Hz); null measures it.")


DeviceName = Annotated[StrictStr, Field(
    min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
    description="Name the device is stored under (what Builder's device name fields refer to).")]
DeviceClass = Annotated[StrictStr, Field(
    min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$",
    description="A PsychoPy device class (e.g. psychopy.hardware.button.KeyboardButtonBox) or an alias "
                "such as `keyboard`; other classes are refused.")]
DeviceParams = Annotated[dict[Name, ExpInfoValue], Field(max_length=64)]


class ListDevicesArgs(CommandArgs):
    """The session's devices: name, class, params (or the experiment that set it up), whether ready."""

    result_doc = "A list of `{name, device_class, params | experiment, ready, class, error}`."


class ListAvailableDevicesArgs(CommandArgs):
    """Devices the machine offers, by class (PsychoPy's `DeviceManager.getAvailableDevices`)."""

    result_doc = "Device class to a list of parameter sets, one per device found."
    example_args = {"device_class": "keyboard"}

    device_class: Optional[DeviceClass] = Field(None, description="Only this class; null lists every class.")


class AddDeviceArgs(CommandArgs):
    """Set up a device under a name, between runs; it persists across runs and worker restarts."""

    result_doc = "The new device's description (`device_error` with the device's message if it fails)."
    example_args = {
        "name": "buttonBox",
        "device_class": "psychopy.hardware.button.KeyboardButtonBox",
        "params": {"buttons": ["a", "s", "d", "f"]},
    }

    name: DeviceName
    device_class: DeviceClass
    params: DeviceParams = Field(default_factory=dict, description=(
        "Keyword arguments for the device class (JSON scalars or lists), e.g. "
        "{\"buttons\": [\"a\", \"b\"]} for a KeyboardButtonBox."))


class RemoveDeviceArgs(CommandArgs):
    """Close and forget a session device (between runs)."""

    result_doc = "`true`"
    example_args = {"name": "buttonBox"}

    name: DeviceName


class SetupDevicesArgs(CommandArgs):
    """Run an experiment's `setupDevices` once; the devices it creates become session devices."""

    result_doc = "The names of the devices the experiment's `setupDevices` created."
    example_args = {"key": "stroop_lite"}

    key: Name = Field(description="The experiment's key.")


class CheckTimingArgs(CommandArgs):
    """Flip the session window `frames` times (between runs) and report refresh rate, jitter and drops."""

    frames: Annotated[StrictInt, Field(ge=10, le=1200)] = Field(
        300, description="Frames to flip (at 60 Hz, 300 take 5 s).")


class SubscribeArgs(CommandArgs):
    """Receive events of these topics too (new connections get `all`)."""

    result_doc = '`{"topics": [...]}`: the topics now subscribed.'
    example_args = {"topics": ["runs", "data"]}

    topics: Topics = Field(description="Topics to add.")


class UnsubscribeArgs(CommandArgs):
    """Stop receiving events of these topics (`all` removes the catch-all, not other topics)."""

    result_doc = '`{"topics": [...]}`: the topics now subscribed.'
    example_args = {"topics": ["data"]}

    topics: Topics = Field(description="Topics to remove.")


class ReplayArgs(CommandArgs):
    """Buffered events with `seq` > since, in the reply (for subscribed topics)."""

    result_doc = ('`{"events": [<event message>, ...], "more": <bool>, "gap": {"from_seq", "to_seq"}}` '
                  "(`gap` only when events are missing; `more` when the reply was cut at 10000 events).")
    example_args = {"since": 120}

    since: Annotated[StrictInt, Field(ge=0)] = Field(description="Return events after this `seq`.")


class ListRunsArgs(CommandArgs):
    """Recent runs seen by this server, newest first."""

    result_doc = "A list of run records, newest first."
    example_args = {"limit": 10}

    limit: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(50, description="At most this many runs.")


class GetRunArgs(CommandArgs):
    """One run's record: status, outcome, rows, data files, error."""

    result_doc = "The run record (`not_found` when unknown)."
    example_args = {"run_id": "20250101T120000-stroop_lite-a1b2c3"}

    run_id: Name = Field(description="The run's id.")


class ClientsArgs(CommandArgs):
    """Who is connected (controllers only): each client's id, name, role and connection time (Unix seconds)."""

from .plans import PLAN_COMMANDS, PLAN_OBSERVER_COMMANDS  # noqa: E402 - the plan commands, defined with their models

COMMANDS: dict[str, type[CommandArgs]] = {
    "ping": PingArgs,
    "state": StateArgs,
    "list_experiments": ListExperimentsArgs,
    "add_experiment": AddExperimentArgs,
    "rescan": RescanArgs,
    "run": RunArgs,
    "pause": PauseArgs,
    "resume": ResumeArgs,
    "stop": StopArgs,
    "abort": AbortArgs,
    "get_exp_info": GetExpInfoArgs,
    "set_exp_info": SetExpInfoArgs,
    "add_data": AddDataArgs,
    "annotate": AnnotateArgs,
    "trials": TrialsArgs,
    "skip_trials": SkipTrialsArgs,
    "rewind_trials": RewindTrialsArgs,
    "setup_window": SetupWindowArgs,
    "check_timing": CheckTimingArgs,
    "subscribe": SubscribeArgs,
    "unsubscribe": UnsubscribeArgs,
    "replay": ReplayArgs,
    "list_runs": ListRunsArgs,
    "get_run": GetRunArgs,
    "list_devices": ListDevicesArgs,
    "list_available_devices": ListAvailableDevicesArgs,
    "add_device": AddDeviceArgs,
    "remove_device": RemoveDeviceArgs,
    "setup_devices": SetupDevicesArgs,
    "clients": ClientsArgs,
    **PLAN_COMMANDS,
}

OBSERVER_COMMANDS: frozenset[str] = frozenset({
    "ping", "state", "list_experiments", "get_exp_info", "trials", "subscribe", "unsubscribe",
    "replay", "list_runs", "get_run", "list_devices", *PLAN_OBSERVER_COMMANDS,
})
CONTROLLER_COMMANDS: frozenset[str] = frozenset(COMMANDS) - OBSERVER_COMMANDS


def required_role(cmd: str) -> Literal["observer", "controller"]:
    """The least role that may send ``cmd`` (observer commands are open to controllers too)."""
    return "observer" if cmd in OBSERVER_COMMANDS else "controller"


# --- requests ---------------------------------------------------------------------------------


def _request_schema_extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Envelope fields required, plus ``x-role``: the least role allowed to send the command."""
    _require_envelope(schema, model)
    cmd = model.model_fields["cmd"].default
    if isinstance(cmd, str):
        schema["x-role"] = required_role(cmd)


class Request(Envelope):
    """A command from the client; the server answers with a ``reply`` carrying the same ``id``.

    This is the base of the per-command models; ``Request.model_validate`` picks
    the right one by ``cmd``. Use ``isinstance(x, Request)`` to test for any request.
    """

    model_config = ConfigDict(json_schema_extra=_request_schema_extra)

    type: Literal["request"] = Field("request", description="Message type.")
    id: RequestId = Field(description="Chosen by the client (string of at most 64 chars, or integer); "
                                      "echoed in the reply.")
    cmd: str = Field(description="The command.")
    args: CommandArgs = Field(default_factory=CommandArgs, description="The command's arguments.")
    not_after: Optional[Annotated[FiniteFloat, Field(gt=0)]] = Field(None, description=(
        "Optional deadline (server wall clock, Unix seconds): a request that arrives later is "
        "refused with `expired` and not carried out, so a command delayed by the network never "
        "acts at an arbitrary later moment. null: no deadline."))

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> "Request":  # type: ignore[override]
        """Validate a request; on ``Request`` itself, as the per-command model its ``cmd`` names.

        Raises pydantic's ValidationError for an unknown ``cmd`` or bad ``args``.
        """
        if cls is Request:
            return REQUEST_ADAPTER.validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)


def _request_model(cmd: str, args_model: type[CommandArgs]) -> type[Request]:
    name = "".join(part.title() for part in cmd.split("_")) + "Request"
    return create_model(  # type: ignore[call-overload]
        name, __base__=Request, __module__=__name__, __doc__=args_model.__doc__,
        cmd=(Literal[cmd], Field(cmd, description="The command.")),  # type: ignore[valid-type]
        args=(args_model, Field(default_factory=args_model, description="The command's arguments.")),
    )


REQUEST_MODELS: dict[str, type[Request]] = {cmd: _request_model(cmd, args) for cmd, args in COMMANDS.items()}

RequestUnion = Annotated[  # type: ignore[misc]
    Union[tuple(REQUEST_MODELS.values())], Field(discriminator="cmd")]
REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(RequestUnion)
