"""``liaison plan ...`` (session plans) and the ``--simulate`` options shared with ``liaison run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

plan_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Run session plans: participants x experiments, counterbalanced, journalled.")

TOKEN_HELP = "Access token (or set LIAISON_TOKEN)."
SIM_HELP = ("Simulation setting name=value (repeatable): p_correct, p_miss, rt (lognormal|fixed), rt_mean, rt_sd "
            "(seconds), hold, seed. Implies --simulate.")
PLAN_ENDS = ("finished", "cancelled", "stopped")


def policy_from_options(simulate: bool, settings: List[str] | None) -> dict[str, Any] | None:
    """The simulation policy ``--simulate``/``--sim k=v`` ask for (None: a real run)."""
    from .cli import fail

    if not simulate and not settings:
        return None
    policy: dict[str, Any] = {}
    for pair in settings or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            fail(f"--sim {pair!r} must look like name=value, e.g. p_correct=0.9")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # rt=fixed
        if isinstance(value, int) and not isinstance(value, bool) and name != "seed":
            value = float(value)  # rt_mean=1 means 1.0 s
        policy[name.strip()] = value
    from .protocol.simulation import SimulationPolicy
    from pydantic import ValidationError

    try:
        return SimulationPolicy.model_validate(policy).model_dump()
    except ValidationError as exc:
        fail("bad --sim: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    return None


def _client(url: str, token: str | None, observer: bool = False):
    from .client import Client

    return Client(url, token, role="observer" if observer else "controller", name="liaison-plan")


def _describe(data: dict[str, Any]) -> str:
    step = data.get("step") or {}
    where = f"step {data.get('cursor')}/{data.get('steps')}"
    if step.get("kind") == "run":
        where += f" ({step.get('participant')}: {step.get('key')})"
    return f"[{data.get('status')}] {where}: {data.get('message', '')}"


@plan_app.command("run")
def plan_run(
    url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
    plan_file: Path = typer.Argument(..., help="The plan (TOML)."),
    simulate: bool = typer.Option(False, "--simulate", help="Dry-run every run with a simulated participant."),
    sim: List[str] = typer.Option([], "--sim", help=SIM_HELP),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    detach: bool = typer.Option(False, help="Start the plan and return (it runs on the server)."),
    timeout: float = typer.Option(86_400, help="Give up following after this many seconds without news."),
) -> None:
    """Start a session plan on a server and follow it to its end (Ctrl+C leaves it running)."""
    from .cli import client_error, fail
    from .client import LiaisonError

    try:
        text = plan_file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {plan_file}: {exc.strerror or exc}")
    from .protocol.plan_file import PlanError, parse_plan

    try:
        parse_plan(text)  # say what is wrong before connecting
    except PlanError as exc:
        fail(str(exc))
    policy = policy_from_options(simulate, sim)
    try:
        with _client(url, token) as client:
            state = client.plan_start(text, simulate=policy)
            typer.echo(f"plan {state['name']!r} ({state['plan_id']}) started: {len(state['steps'])} steps"
                       + (" - dry run" if policy is not None or state.get("simulate") else ""))
            if detach:
                return
            for event in client.events(timeout=timeout):
                if event.event != "plan_changed" or event.data.get("plan_id") != state["plan_id"]:
                    continue
                typer.echo(_describe(event.data))
                if event.data.get("status") in PLAN_ENDS:
                    final = client.plan_state()
                    _summary(final)
                    raise typer.Exit(0 if final["status"] == "finished" else 1)
            fail(f"no news from the plan within {timeout:g} s", 1)
    except LiaisonError as exc:
        client_error(exc)


def _summary(state: dict[str, Any]) -> None:
    runs = [s for s in state.get("steps", []) if s["kind"] == "run"]
    by_status: dict[str, int] = {}
    for step in runs:
        by_status[step["status"]] = by_status.get(step["status"], 0) + 1
    typer.echo(f"plan {state['status']}: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))


def _simple(cmd: str, observer: bool = False):
    def command(
        url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
        token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the plan's whole state as JSON."),
    ) -> None:
        from .cli import client_error
        from .client import LiaisonError

        try:
            with _client(url, token, observer) as client:
                state = client.request(f"plan_{cmd}")
        except LiaisonError as exc:
            client_error(exc)
        if as_json or state.get("status") == "none":
            typer.echo(json.dumps(state, indent=2, default=str))
        else:
            typer.echo(_describe({**state, "step": (state["steps"][state["cursor"]]
                                                    if state["cursor"] < len(state["steps"]) else None),
                                  "steps": len(state["steps"])}))
            _summary(state)

    command.__doc__ = {
        "state": "Show the plan: status, where it is, what ran.",
        "pause": "Pause the plan after the run in progress.",
        "continue": "Continue a paused or stopped plan, or end a break that waits for a controller.",
        "skip": "Skip the current step (its run is stopped, data saved).",
        "cancel": "End the plan (a run in progress is stopped, data saved).",
    }[cmd]
    return command


for _cmd in ("state", "pause", "continue", "skip", "cancel"):
    plan_app.command(_cmd)(_simple(_cmd, observer=_cmd == "state"))
