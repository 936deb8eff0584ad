"""A plan unrolled into its steps: runs and breaks, in the order they happen.

Counterbalancing is decided here, once, when the plan starts; the steps are
journalled, so a server that restarts mid-plan continues the same schedule.

- ``latin_square``: row r is the listed order rotated by r; participant i gets
  row i mod n, so over n participants every experiment is in every position once.
- ``balanced``: a Williams design: first row 0, 1, n-1, 2, n-2, ...; row r adds
  r (mod n); for odd n the mirrored rows follow (2n rows), so every experiment
  also directly follows every other equally often.
- ``random``: participant p's order is a shuffle seeded by (seed, p), so it
  does not depend on how many participants the plan lists.
"""

from __future__ import annotations

import random
from typing import Any

from ..protocol.plan_file import Break, Plan


def latin_square(n: int) -> list[list[int]]:
    """The cyclic ``n`` x ``n`` Latin square: row ``r`` is ``r, r+1, ... (mod n)``."""
    return [[(row + j) % n for j in range(n)] for row in range(n)]


def williams(n: int) -> list[list[int]]:
    """A Williams square: each condition follows each other equally often; ``n`` rows (``2n`` for odd ``n``)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    if n % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


def order_for(plan: Plan, index: int, participant: str) -> tuple[list[int], dict[str, Any]]:
    """The experiment indices participant ``index`` runs, and the counterbalancing cell they are in."""
    n = len(plan.experiments)
    method = plan.counterbalance.method
    if method == "latin_square":
        rows = latin_square(n)
    elif method == "balanced":
        rows = williams(n)
    elif method == "random":
        order = list(range(n))
        random.Random(f"{plan.counterbalance.seed}:{participant}").shuffle(order)
        return order, {"method": method, "seed": plan.counterbalance.seed}
    else:
        return list(range(n)), {"method": "none"}
    row = index % len(rows)
    return rows[row], {"method": method, "row": row, "rows": len(rows)}


def _break_step(kind: str, brk: Break) -> dict[str, Any]:
    return {"kind": "break", "between": kind, "break": brk.model_dump(), "status": "pending"}


def unroll(plan: Plan) -> list[dict[str, Any]]:
    """Every step of the plan: ``run`` steps (key, participant, exp_info, cell) and ``break`` steps."""
    steps: list[dict[str, Any]] = []
    participants = plan.participant_ids()
    run_number = 0
    for p_index, participant in enumerate(participants):
        if p_index and plan.between_participants is not None:
            steps.append(_break_step("participants", plan.between_participants))
        order, cell = order_for(plan, p_index, participant)
        keys = [plan.experiments[i].key for i in order]
        for position, exp_index in enumerate(order):
            if position and plan.between_experiments is not None:
                steps.append(_break_step("experiments", plan.between_experiments))
            experiment = plan.experiments[exp_index]
            exp_info = {**experiment.exp_info, **plan.participant_info.get(participant, {}),
                        "participant": participant}
            steps.append({
                "kind": "run", "participant": participant, "key": experiment.key, "exp_info": exp_info,
                "cell": {**cell, "order": keys, "position": position},
                "seed": None if plan.seed is None else (plan.seed + run_number) % 2**32,
                "status": "pending", "attempts": [],
            })
            run_number += 1
    for index, step in enumerate(steps):
        step["index"] = index
    return steps
