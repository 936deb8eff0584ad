"""The simulated participant's policy, as the protocol carries it (``run``'s and ``plan_start``'s ``simulate``).

The worker re-checks the same rules (``session.simulate.Policy``), since the
session package never imports this one.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

Probability = Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]
Seconds = Annotated[StrictFloat, Field(ge=0, le=3600, allow_inf_nan=False)]


class SimulationPolicy(BaseModel):
    """How the simulated participant of a dry run answers; every field has a default (`{}` is a policy).

    Responses are chosen from what each component accepts (its keys, clickable
    stimuli, slider range), correct with probability `p_correct` when the
    component has a correct answer, and timed from the component's onset.
    """

    model_config = ConfigDict(extra="forbid")

    seed: Optional[Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]] = Field(
        None, description="Seed of the responses; null uses the run's seed (so `seed` reproduces both).")
    p_correct: Probability = Field(0.8, description="Probability of the correct answer where there is one.")
    p_miss: Probability = Field(0.0, description="Probability of not responding at all.")
    rt: Literal["lognormal", "fixed"] = Field("lognormal", description="Response-time distribution.")
    rt_mean: Annotated[StrictFloat, Field(gt=0, le=3600, allow_inf_nan=False)] = Field(
        0.45, description="Mean response time, seconds (the fixed time for `fixed`).")
    rt_sd: Seconds = Field(0.1, description="Standard deviation of the response time, seconds (log-normal).")
    hold: Seconds = Field(0.08, description="How long a key or button is held down, seconds.")
