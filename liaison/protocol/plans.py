"""The ``plan_*`` commands: run a session plan (see :mod:`liaison.protocol.plan_file`) as a queue."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field, StrictStr, model_validator

from .args import CommandArgs
from .plan_file import Plan
from .simulation import SimulationPolicy

MAX_PLAN_TEXT = 1 << 20


class PlanStartArgs(CommandArgs):
    """Start a session plan (one at a time); its progress is journalled, so it survives restarts."""

    result_doc = "The plan's state, as `plan_state` gives it; `plan_changed` events follow."
    example_args = {
        "toml": ('name = "day 1"\nparticipants = ["P01", "P02"]\n'
                 '[counterbalance]\nmethod = "latin_square"\n'
                 '[[experiments]]\nkey = "stroop_lite"\n[[experiments]]\nkey = "rt_demo"\n'),
        "simulate": {"p_correct": 0.9, "rt_mean": 0.5, "rt_sd": 0.1},
    }

    toml: Optional[Annotated[StrictStr, Field(min_length=1, max_length=MAX_PLAN_TEXT)]] = Field(
        None, description="The plan file's text (TOML). Give this or `plan`.")
    plan: Optional[Plan] = Field(None, description="The plan as an object. Give this or `toml`.")
    simulate: Optional[SimulationPolicy] = Field(None, description=(
        "Dry-run every run of the plan with this policy (overrides the plan's own `simulate`)."))

    @model_validator(mode="after")
    def _one_source(self) -> "PlanStartArgs":
        if (self.toml is None) == (self.plan is None):
            raise ValueError("give exactly one of toml (the plan file's text) or plan (an object)")
        return self


class PlanPauseArgs(CommandArgs):
    """Pause the plan after the run in progress (the run itself goes on to its end)."""

    result_doc = "The plan's state (`pausing` until the run in progress ends, then `paused`)."


class PlanContinueArgs(CommandArgs):
    """Continue a paused or stopped plan, or end a break that waits for a controller."""

    result_doc = "The plan's state."


class PlanSkipArgs(CommandArgs):
    """Skip the current step: stop its run (data saved) or end its break; when idle, the next step."""

    result_doc = "The plan's state."


class PlanCancelArgs(CommandArgs):
    """End the plan: a run in progress is stopped (its data saved); no further step starts."""

    result_doc = "The plan's state."


class PlanStateArgs(CommandArgs):
    """The plan: its status, every step (what ran, with which run ids and outcome; what is next)."""

    result_doc = ('`{"plan_id", "name", "status", "cursor", "steps": [<step>, ...], "participants": '
                  '{<id>: {"runs", "done"}}, "completed_runs", "message", ...}`; each step has '
                  "`kind` (run or break), `status`, and for runs `participant`, `key`, `exp_info`, `cell` "
                  '(counterbalancing) and `attempts` (run ids and outcomes). `{"status": "none"}` '
                  "before any plan.")


PLAN_COMMANDS: dict[str, type[CommandArgs]] = {
    "plan_start": PlanStartArgs,
    "plan_pause": PlanPauseArgs,
    "plan_continue": PlanContinueArgs,
    "plan_skip": PlanSkipArgs,
    "plan_cancel": PlanCancelArgs,
    "plan_state": PlanStateArgs,
}
PLAN_OBSERVER_COMMANDS: frozenset[str] = frozenset({"plan_state"})
