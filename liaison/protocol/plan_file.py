"""A session plan: who runs which experiments in what order, as a TOML file validated by pydantic.

    name = "day 1"
    participants = ["P01", "P02", "P03"]          # or { pattern = "P{n:02d}", count = 3 }

    [counterbalance]
    method = "latin_square"                       # none | latin_square | balanced | random
    seed = 7                                      # for random

    [[experiments]]
    key = "stroop_lite"
    exp_info = { session = "001" }

    [[experiments]]
    key = "rt_demo"

    [participant_info.P02]                        # expInfo for one participant
    session = "002"

    [between_experiments]                         # a break after each run but a participant's last
    kind = "timed"                                # timed | continue
    seconds = 30

    [between_participants]
    kind = "continue"                             # wait for a controller's plan_continue

    [on_failure]
    action = "retry"                              # retry | skip | stop
    retries = 1                                   # retry: this many times, then skip

Pure code (no I/O beyond parsing the text it is given).
"""

from __future__ import annotations

import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from .simulation import SimulationPolicy

MAX_PARTICIPANTS = 10_000
MAX_EXPERIMENTS = 100
MAX_STEPS = 100_000
PATTERN_FIELD = re.compile(r"\{n(?::0?\d{0,2}d)?\}")

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
InfoValue = Union[bool, int, float, Annotated[str, Field(max_length=10_000)], None]
InfoDict = Annotated[dict[Name, InfoValue], Field(max_length=200)]


class PlanModel(BaseModel):
    """Base of the plan's tables: unknown keys are errors (a typo never silently does nothing)."""

    model_config = ConfigDict(extra="forbid")


class ParticipantPattern(PlanModel):
    """Participant ids made from a pattern: `{n}` (or `{n:03d}`) is replaced by start, start+1, ..."""

    pattern: Annotated[StrictStr, Field(min_length=1, max_length=200)] = Field(
        description="Id pattern with one `{n}` or `{n:0Nd}` field, e.g. `P{n:02d}`.")
    count: Annotated[StrictInt, Field(ge=1, le=MAX_PARTICIPANTS)] = Field(description="How many participants.")
    start: Annotated[StrictInt, Field(ge=0, le=10**9)] = Field(1, description="The first number.")

    @field_validator("pattern")
    @classmethod
    def _one_number_field(cls, value: str) -> str:
        fields = PATTERN_FIELD.findall(value)
        rest = PATTERN_FIELD.sub("", value)
        if len(fields) != 1 or "{" in rest or "}" in rest:
            raise ValueError("the pattern needs exactly one {n} or {n:0Nd} field and no other braces")
        return value

    def ids(self) -> list[str]:
        """The ids the pattern makes: ``pattern.format(n=start)`` .. ``n=start+count-1``."""
        return [self.pattern.format(n=self.start + i) for i in range(self.count)]


class PlanExperiment(PlanModel):
    """One experiment of the plan and the expInfo its runs get."""

    key: Name = Field(description="The experiment's key on the server (see `list_experiments`).")
    exp_info: InfoDict = Field(default_factory=dict, description="expInfo values for every run of it.")


class Counterbalance(PlanModel):
    """How each participant's order of experiments is chosen."""

    method: Literal["none", "latin_square", "balanced", "random"] = Field("none", description=(
        "`none`: the listed order for everyone; `latin_square`: cyclic rows (each experiment once in each "
        "position); `balanced`: Williams design (also each experiment before each other equally often); "
        "`random`: a seeded shuffle per participant."))
    seed: Optional[Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]] = Field(
        None, description="Seed for `random` (required there, so the orders can be reproduced).")

    @model_validator(mode="after")
    def _random_needs_seed(self) -> "Counterbalance":
        if self.method == "random" and self.seed is None:
            raise ValueError("counterbalance method 'random' needs a seed (so the orders can be reproduced)")
        return self


class Break(PlanModel):
    """A pause in the plan: a timed rest, or a wait for a controller's `plan_continue`."""

    kind: Literal["timed", "continue"] = Field(description="`timed`: rest `seconds`; `continue`: wait.")
    seconds: Annotated[float, Field(ge=0, le=86_400)] = Field(0, description="Rest length for `timed`.")
    message: Annotated[StrictStr, Field(max_length=1000)] = Field("", description="Shown to controllers.")

    @model_validator(mode="after")
    def _timed_needs_seconds(self) -> "Break":
        if self.kind == "timed" and self.seconds <= 0:
            raise ValueError("a timed break needs seconds > 0")
        return self


class FailurePolicy(PlanModel):
    """What the plan does when a run fails (or a crash interrupts it)."""

    action: Literal["retry", "skip", "stop"] = Field("skip", description=(
        "`retry`: run the step again (up to `retries` times, then skip it); `skip`: go on with the next "
        "step; `stop`: stop the plan (it can be continued)."))
    retries: Annotated[StrictInt, Field(ge=0, le=100)] = Field(1, description="Re-runs for `retry`.")
    interrupted: Literal["rerun", "skip"] = Field("rerun", description=(
        "A run cut short by a server crash or restart (recorded as aborted): run it again, or skip it."))


class Plan(PlanModel):
    """A session plan: participants × experiments, in order or counterbalanced, with breaks."""

    name: Name = Field(description="The plan's name (in every run's manifest).")
    participants: Union[Annotated[list[Name], Field(min_length=1, max_length=MAX_PARTICIPANTS)],
                        ParticipantPattern] = Field(description="Participant ids, or a pattern.")
    experiments: Annotated[list[PlanExperiment], Field(min_length=1, max_length=MAX_EXPERIMENTS)] = Field(
        description="The experiments each participant runs.")
    counterbalance: Counterbalance = Field(default_factory=Counterbalance)
    participant_info: Annotated[dict[Name, InfoDict], Field(max_length=MAX_PARTICIPANTS)] = Field(
        default_factory=dict, description="expInfo per participant id (overrides the experiment's).")
    between_experiments: Optional[Break] = Field(None, description="Break after each run but a participant's last.")
    between_participants: Optional[Break] = Field(None, description="Break between two participants.")
    on_failure: FailurePolicy = Field(default_factory=FailurePolicy)
    simulate: Optional[SimulationPolicy] = Field(None, description="Dry-run every run with this policy.")
    seed: Optional[Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]] = Field(
        None, description="Base seed: run k of the plan gets seed + k (null: each run picks one).")

    @model_validator(mode="after")
    def _consistent(self) -> "Plan":
        ids = self.participant_ids()
        if len(set(ids)) != len(ids):
            raise ValueError("participant ids must be distinct")
        unknown = sorted(set(self.participant_info) - set(ids))
        if unknown:
            raise ValueError(f"participant_info names participants not in the plan: {', '.join(unknown)}")
        keys = [e.key for e in self.experiments]
        if len(set(keys)) != len(keys):
            raise ValueError("each experiment may appear once in a plan")
        if len(ids) * len(keys) > MAX_STEPS:
            raise ValueError(f"the plan has more than {MAX_STEPS} runs")
        return self

    def participant_ids(self) -> list[str]:
        """Every participant id, in plan order."""
        return list(self.participants) if isinstance(self.participants, list) else self.participants.ids()


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the problem."""


def parse_plan(text: str) -> Plan:
    """A plan from TOML text; raises :class:`PlanError` naming the first problems."""

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"the plan is not valid TOML: {exc}") from None
    return plan_from_dict(data)


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Validate a plan (from TOML or JSON); raises PlanError naming each problem and where."""
    from pydantic import ValidationError

    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
                             for err in exc.errors()[:5])
        raise PlanError(f"the plan is not valid: {problems}") from None


def plan_json_schema() -> dict[str, Any]:
    """The plan file's JSON Schema (published next to the protocol's)."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Liaison session plan"
    return schema
