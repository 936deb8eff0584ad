"""``liaison``: serve experiments, run them, watch a session, talk to a server.

Exit codes: 0 success (for ``run``: the run completed); 1 the run failed or
the server answered with an error; 2 bad usage or no connection; 3 the run
was stopped or aborted before it finished.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from .cli_plans import SIM_HELP, plan_app, policy_from_options

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0].replace("``", ""),
                  context_settings={"help_option_names": ["-h", "--help"]})

TOKEN_HELP = "Access token (or set LIAISON_TOKEN)."
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 3


def fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def parse_pairs(pairs: List[str] | None, what: str) -> dict[str, Any]:
    """``k=v`` keeps v as text (PsychoPy's expInfo is text); ``k:=json`` parses v as JSON."""
    values: dict[str, Any] = {}
    for pair in pairs or []:
        if ":=" in pair:
            key, raw = pair.split(":=", 1)
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError as exc:
                fail(f"{what} {pair!r}: the value after := must be JSON ({exc.msg})")
        elif "=" in pair:
            key, values_text = pair.split("=", 1)
            values[key] = values_text
            continue
        else:
            fail(f"{what} {pair!r} must look like key=value or key:=json")
        if not key:
            fail(f"{what} {pair!r} has an empty key")
    return values


def parse_size(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"window size {text!r} must look like 1024x768")
    return [width, height]


def client_error(exc: Exception) -> None:
    from .client import ConnectionLost, LiaisonError, Unauthorized

    if isinstance(exc, ConnectionLost):
        fail(str(exc.message), EXIT_USAGE)
    if isinstance(exc, Unauthorized):  # like a refused connection: fix the token, not the command
        fail(f"{exc.code}: {exc.message} (check --token or LIAISON_TOKEN)", EXIT_USAGE)
    if isinstance(exc, LiaisonError):
        details = f"\n{json.dumps(exc.details, indent=2)}" if exc.details else ""
        fail(f"{exc.code}: {exc.message}{details}", EXIT_FAILED)
    raise exc


@app.command()
def serve(
    root: Path = typer.Argument(..., help="Folder with the experiments (.psyexp and Builder-style .py)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; other machines need 0.0.0.0 and a token."),
    port: int = typer.Option(8765, help="TCP port for WebSocket and the dashboard (0 picks a free one)."),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP + " Generated if absent."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No token (only on loopback)."),
    allow_origin: List[str] = typer.Option([], help="Extra browser Origin allowed to connect (repeatable)."),
    data_dir: Optional[Path] = typer.Option(None, help="Where runs are saved [default: ROOT/data]."),
    headless: Optional[bool] = typer.Option(None, "--headless/--no-headless",
                                            help="Start a virtual display (Xvfb) [default: only if none]."),
    window_size: Optional[str] = typer.Option(None, help="Window size, e.g. 1920x1080 [default: 800x600]."),
    fullscr: bool = typer.Option(False, help="Full-screen window."),
    screen: int = typer.Option(0, help="Screen number for the window."),
    frame_rate: Optional[float] = typer.Option(None, help="Report this frame rate instead of measuring."),
    param: List[str] = typer.Option([], help="Session param overriding expInfo, key=value (repeatable)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Serve the experiments under ROOT to controllers and observers."""
    from .server.app import LiaisonServer
    from .server.config import ServerConfig

    if not root.is_dir():
        fail(f"{root} is not a folder")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    window: dict[str, Any] = {"fullscr": fullscr, "screen": screen}
    if window_size:
        window["size"] = parse_size(window_size)
    if frame_rate:
        window["frame_rate"] = frame_rate
    try:
        config = ServerConfig(root=root, host=host, port=port, token=token, no_auth=no_auth,
                              allowed_origins=list(allow_origin), data_dir=data_dir or root / "data",
                              headless=headless, window=window, params=parse_pairs(param, "--param"))
    except ValueError as exc:
        fail(str(exc))
    from session.datalock import DataDirBusy

    try:
        server = LiaisonServer(config)
    except DataDirBusy as exc:
        fail(f"{exc}; use another --data-dir or stop that server")

    async def main() -> None:
        task = asyncio.create_task(server.serve(install_signals=True))
        while not server.ready.is_set() and not task.done():
            await asyncio.sleep(0.05)
        if server.port is not None:
            shown = f"[{host}]" if ":" in host else host
            fragment = "" if config.no_auth else f"#token={config.token}"
            typer.echo(f"Liaison is serving {config.root}")
            typer.echo(f"  WebSocket: ws://{shown}:{server.port}/")
            typer.echo(f"  Dashboard: http://{shown}:{server.port}/{fragment}")
            if not config.no_auth and not token:
                typer.echo(f"  Token:     {config.token}   (generated; pass --token or LIAISON_TOKEN to fix it)")
            typer.echo("Press Ctrl+C to stop (a running experiment is stopped and its data saved).", err=False)
            sys.stdout.flush()
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. the worker could not open a window
        fail(str(exc), EXIT_FAILED)


@app.command("run")
def run_command(
    url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
    key: str = typer.Argument(..., help="Experiment key (see `liaison experiments`)."),
    exp_info: List[str] = typer.Option([], "--exp-info", "-i", help="expInfo entry key=value (repeatable)."),
    seed: Optional[int] = typer.Option(None, help="Random seed for the run."),
    simulate: bool = typer.Option(False, "--simulate", help="Dry run: a simulated participant responds."),
    sim: List[str] = typer.Option([], "--sim", help=SIM_HELP),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    timeout: float = typer.Option(3600, help="Give up waiting after this many seconds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the outcome."),
) -> None:
    """Run an experiment on a server and follow it to the end."""
    from .client import Client, LiaisonError

    values = parse_pairs(exp_info, "--exp-info")
    policy = policy_from_options(simulate, sim)
    try:
        with Client(url, token, name="liaison-cli") as client:
            run = client.run(key, values, seed, simulate=policy)
            typer.echo(f"run {run.run_id} of {key} started" + (" (dry run: simulated participant)" if policy else ""))
            rows = 0
            for event in client.events(timeout=timeout):
                if event.run_id != run.run_id:
                    continue
                if event.event == "data_rows":
                    rows = event.data["first_row"] + len(event.data["rows"])
                    if not quiet:
                        typer.echo(f"  rows: {rows}")
                elif event.event in ("run_paused", "run_resumed", "run_stopping") and not quiet:
                    typer.echo(f"  {event.event.replace('run_', '')}")
                elif event.event in ("run_finished", "run_failed"):
                    return report_end(event)
            fail(f"no end of run within {timeout:g} s", EXIT_FAILED)
    except LiaisonError as exc:
        client_error(exc)


def report_end(event) -> None:
    data = event.data
    if event.event == "run_failed":
        typer.secho(f"run {data['run_id']} failed: {data.get('error')}", fg=typer.colors.RED, err=True)
        if data.get("traceback"):
            typer.echo(data["traceback"], err=True)
        raise typer.Exit(EXIT_FAILED)
    outcome = data.get("outcome")
    typer.echo(f"run {data['run_id']} {outcome}: {data.get('rows', 0)} rows; files: "
               + ", ".join(data.get("data_files") or []))
    raise typer.Exit(0 if outcome == "completed" else EXIT_STOPPED)


@app.command()
def watch(
    url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, for machines."),
    since: Optional[int] = typer.Option(None, help="Replay events after this sequence number first."),
    count: Optional[int] = typer.Option(None, help="Exit after this many events."),
    idle_timeout: Optional[float] = typer.Option(None, help="Exit after this many seconds without events."),
) -> None:
    """Stream a session's events (as an observer: it cannot change anything)."""
    from .client import Client, LiaisonError

    seen = 0
    try:
        with Client(url, token, role="observer", since=since, name="liaison-watch") as client:
            if not as_json:
                state = (client.welcome or {}).get("state", {})
                typer.echo(f"connected: status {state.get('status')}, last seq {client.welcome.get('last_seq')}")
            for event in client.events(timeout=idle_timeout):
                if as_json:
                    typer.echo(json.dumps({"seq": event.seq, "event": event.event, "time": event.time,
                                           "data": event.data}))
                else:
                    typer.echo(describe_event(event))
                seen += 1
                if count is not None and seen >= count:
                    break
    except LiaisonError as exc:
        client_error(exc)


def describe_event(event) -> str:
    data = event.data
    if event.event == "data_rows":
        detail = f"rows {data['first_row']}..{data['first_row'] + len(data['rows']) - 1}"
    elif event.event == "status":
        detail = data.get("status", "")
    elif event.event == "annotation":
        detail = repr(data.get("text"))
    elif event.event == "gap":
        detail = f"missed events {data.get('from_seq')}..{data.get('to_seq')}"
    else:
        detail = " ".join(f"{k}={v}" for k, v in data.items() if k in ("key", "outcome", "error", "rows"))
    run = f" [{data['run_id']}]" if data.get("run_id") else ""
    return f"{event.seq:>6} {event.event:<18}{run} {detail}"


@app.command()
def send(
    url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
    cmd: str = typer.Argument(..., help="Command name, e.g. pause, state, set_exp_info."),
    args: str = typer.Argument("{}", help="Arguments as a JSON object."),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    observer: bool = typer.Option(False, help="Connect as an observer."),
) -> None:
    """Send one command and print its result as JSON."""
    from .client import Client, LiaisonError

    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"arguments must be a JSON object: {exc.msg} at position {exc.pos}")
    if not isinstance(parsed, dict):
        fail("arguments must be a JSON object, e.g. '{\"n\": 2}'")
    try:
        with Client(url, token, role="observer" if observer else "controller", name="liaison-send") as client:
            typer.echo(json.dumps(client.request(cmd, **parsed), indent=2, default=str))
    except LiaisonError as exc:
        client_error(exc)


@app.command()
def schema() -> None:
    """Print the protocol's JSON Schema."""
    from .protocol.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


def listed_plainly(rows: list[dict[str, Any]], as_json: bool, empty: str) -> bool:
    """Print ``rows`` as JSON, or say there are none; False when a table is still wanted."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return True
    if not rows:
        typer.echo(empty)
        return True
    return False


@app.command()
def experiments(
    root: Path = typer.Argument(..., help="Folder to search."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the experiments a server would find under ROOT (nothing is imported or run)."""
    from session.experiments import discover, shadowed_module

    if not root.is_dir():
        fail(f"{root} is not a folder")
    found = discover(root)
    rows = []
    for exp in found:
        problem = shadowed_module(exp.path.stem, exp.path.parent)
        rows.append({**exp.describe(root.resolve()),
                     "problem": f"named like the installed module '{problem}'" if problem else None})
    if listed_plainly(rows, as_json, f"no experiments under {root}"):
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        info = ", ".join(f"{k}={v!r}" for k, v in r["exp_info"].items())
        typer.echo(f"{r['key']:<{width}}  {r['kind']:<6}  {r['path']}  {{{info}}}")
        if r["problem"]:
            typer.secho(f"{'':<{width}}  problem: {r['problem']}", fg=typer.colors.YELLOW)


def _journal_or_fail(data_dir: Path, readonly: bool):
    from session.journal import JOURNAL_FILE, Journal

    if not (data_dir / JOURNAL_FILE).exists():
        fail(f"no journal in {data_dir} (expected {JOURNAL_FILE}; is this a server's --data-dir?)")
    return Journal.in_dir(data_dir, readonly=readonly)


@app.command()
def runs(
    data_dir: Path = typer.Argument(..., help="A server's data folder (ROOT/data by default)."),
    limit: int = typer.Option(50, help="Show at most this many runs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the runs recorded in DATA_DIR's journal: status, duration, rows (read-only)."""
    from session.records import read_status

    journal = _journal_or_fail(data_dir, readonly=True)
    try:
        found = journal.runs(limit)
    finally:
        journal.close()
    for run in found:
        run["folder_status"] = read_status(Path(run["data_dir"])) if run.get("data_dir") else None
        ended = run["ended"] or None
        run["duration"] = round(ended - run["started"], 3) if ended and run["started"] else None
    if listed_plainly(found, as_json, f"no runs in {data_dir}"):
        return
    typer.echo(f"{'run id':<44} {'experiment':<16} {'status':<9} {'duration':>9} {'rows':>6}")
    for run in found:
        duration = f"{run['duration']:.1f} s" if run["duration"] is not None else "-"
        status = run["folder_status"] or run["status"].upper()
        typer.echo(f"{run['run_id']:<44} {run['key']:<16} {status:<9} {duration:>9} {run['rows']:>6}")


@app.command()
def recover(
    data_dir: Path = typer.Argument(..., help="A server's data folder, with no server running on it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Close runs a crash left open: rebuild their CSV from the journal, mark them ABORTED.

    A server does this by itself when it starts; this is for a data folder
    you want to inspect or archive without starting one.
    """
    from session.datalock import DataDirBusy, DataDirLock
    from session.events import Publisher
    from session.recovery import recover as recover_runs

    from .protocol import TOPIC_OF_EVENT, Topic, event_json

    try:
        lock = DataDirLock(data_dir).acquire()
    except DataDirBusy as exc:
        fail(f"{exc}: a running server recovers by itself")
    try:
        journal = _journal_or_fail(data_dir, readonly=False)
        publisher = Publisher(first_seq=journal.last_seq + 1)
        publisher.subscribe(lambda event: journal.append(
            [(event, TOPIC_OF_EVENT.get(event.type, Topic.STATUS).value, event_json(event))]))
        report = recover_runs(journal, publisher.publish, reason="recovered offline by `liaison recover` "
                              "after the server stopped during the run")
        journal.close()
    finally:
        lock.release()
    if as_json:
        typer.echo(json.dumps({"damage": report.damage, "runs": report.runs}, indent=2))
    else:
        typer.echo(report.describe())


app.add_typer(plan_app, name="plan")


def main() -> None:
    if os.environ.get("LIAISON_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    app()


if __name__ == "__main__":
    main()
