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
FINGERPRINT_HELP = "wss://: the server certificate's SHA-256 fingerprint that `serve` printed (pins it)."
CA_FILE_HELP = "wss://: trust the certificates signed by this PEM file (e.g. the server's cert.pem)."
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 3


def checked_fingerprint(text: str | None) -> str | None:
    """``--fingerprint`` normalised, or a usage error that says what a fingerprint looks like."""
    if not text:
        return None
    from .client.tls import normalise_fingerprint

    try:
        return normalise_fingerprint(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` in red on stderr and exit with ``code``; never returns."""
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
    """``WIDTHxHEIGHT`` as ``[width, height]``, or None; a malformed size exits with a usage error."""
    if text is None:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"window size {text!r} must look like 1024x768")
    return [width, height]


def client_error(exc: Exception) -> None:
    """Exit with a message for a client error: usage code for a lost connection or a bad token,
    ``EXIT_FAILED`` for other :class:`LiaisonError`; anything else is re-raised.
    """
    from .client import ConnectionLost, LiaisonError, Unauthorized

    if isinstance(exc, ConnectionLost):
        fail(str(exc.message), EXIT_USAGE)
    if isinstance(exc, Unauthorized):  # like a refused connection: fix the token, not the command
        fail(f"{exc.code}: {exc.message} (check --token or LIAISON_TOKEN)", EXIT_USAGE)
    if isinstance(exc, LiaisonError):
        details = f"\n{json.dumps(exc.details, indent=2)}" if exc.details else ""
        fail(f"{exc.code}: {exc.message}{details}", EXIT_FAILED)
    raise exc


def version_callback(value: bool) -> None:
    """``--version``: print the package version and exit."""
    if value:
        from . import __version__

        typer.echo(f"liaison {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Control PsychoPy experiments on a stimulus PC from another machine."""


def serving_root(root: Path | None, examples: bool) -> Path:
    """ROOT as given, or the bundled examples (``--examples``, or no ROOT at all)."""
    from .resources import examples_dir

    if root is not None and examples:
        fail("give a ROOT folder or --examples, not both")
    if root is None:
        bundled = examples_dir()
        if bundled is None:
            fail("this installation has no bundled examples; give a ROOT folder with your experiments")
        return bundled
    if not root.is_dir():
        fail(f"{root} is not a folder")
    return root


def print_addresses(config, server, token_given: bool) -> None:
    """The URLs to open, with the certificate's fingerprint when TLS is on."""
    host = config.host
    if host in ("0.0.0.0", "::", ""):  # every interface: the name other machines use (the certificate has it)
        import socket

        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    secure = server.tls.enabled
    fragment = "" if config.no_auth else f"#token={config.token}"
    typer.echo(f"Liaison is serving {config.root}")
    typer.echo(f"  WebSocket: {'wss' if secure else 'ws'}://{shown}:{server.port}/")
    typer.echo(f"  Dashboard: {'https' if secure else 'http'}://{shown}:{server.port}/{fragment}")
    if secure:
        typer.echo(f"  TLS:       {server.tls.fingerprint}")
        if server.tls.generated:
            typer.echo(f"             (self-signed, {server.tls.cert}; clients pin it with --fingerprint)")
    elif not server.tls.reason == "loopback":
        typer.secho("  WARNING:   plain text off loopback: anyone on the network can read the token and take "
                    "control", fg=typer.colors.RED)
    if not config.no_auth and not token_given:
        typer.echo(f"  Token:     {config.token}   (generated; pass --token or LIAISON_TOKEN to fix it)")
    if config.observer_token:
        typer.echo(f"  Observers: {'https' if secure else 'http'}://{shown}:{server.port}/"
                   f"#token={config.observer_token}&role=observer")
    typer.echo(f"  Data:      {config.data_dir}")


@app.command()
def serve(
    root: Optional[Path] = typer.Argument(None, help="Folder with the experiments (.psyexp and Builder-style .py) "
                                                     "[default: the bundled examples]."),
    examples: bool = typer.Option(False, "--examples", help="Serve the example experiments bundled with Liaison."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; other machines need 0.0.0.0 and a token."),
    port: int = typer.Option(8765, help="TCP port for WebSocket and the dashboard (0 picks a free one)."),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP + " Generated if absent."),
    observer_token: Optional[str] = typer.Option(
        None, envvar="LIAISON_OBSERVER_TOKEN",
        help="A second token that only lets clients watch (or set LIAISON_OBSERVER_TOKEN)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No token (only on loopback)."),
    allow_origin: List[str] = typer.Option([], help="Extra browser Origin allowed to connect (repeatable)."),
    allow_host: List[str] = typer.Option([], help="Extra Host name the server answers to, e.g. a DNS name "
                                         "of this PC (repeatable; '*' turns the check off)."),
    data_dir: Optional[Path] = typer.Option(None, help="Where runs are saved [default: ROOT/data; for the bundled "
                                                       "examples ./liaison-data]."),
    tls: Optional[bool] = typer.Option(None, "--tls/--no-tls",
                                       help="Encrypt (wss://, https://) [default: on unless on loopback]."),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM certificate [default: self-signed, made once per "
                                                       "data folder]."),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert."),
    accept_plaintext_risk: bool = typer.Option(False, "--accept-plaintext-risk",
                                               help="Allow --no-tls off loopback (token and data in clear text)."),
    max_upload_mb: int = typer.Option(200, min=1, help="Largest experiment archive `liaison push` may send, "
                                                       "in MiB (5x that once unpacked)."),
    headless: Optional[bool] = typer.Option(None, "--headless/--no-headless",
                                            help="Start a virtual display (Xvfb) [default: only if none]."),
    window_size: Optional[str] = typer.Option(None, help="Window size, e.g. 1920x1080 [default: 800x600]."),
    fullscr: bool = typer.Option(False, help="Full-screen window."),
    screen: int = typer.Option(0, help="Screen number for the window."),
    frame_rate: Optional[float] = typer.Option(None, help="Report this frame rate instead of measuring."),
    param: List[str] = typer.Option([], help="Session param overriding expInfo, key=value (repeatable)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    recovery_wait: float = typer.Option(30.0, help="Seconds to let a crashed server's worker finish saving "
                                        "its run before recovering it."),
    plugin: List[str] = typer.Option([], help="Enable a plugin, NAME or NAME:key=value,... (repeatable), "
                                              "e.g. lsl or lsl:name=EEG-rig,data=true. See docs/plugins.md."),
    clock: str = typer.Option("float", help="Session clock: 'float' (seconds), 'iso' (ISO 8601 wall clock) "
                              "or a strftime format; sets thisRow.t and log stamps, as in PsychoPy's Session."),
    priority: str = typer.Option("high", help="The experiment's CPU priority: normal (unchanged), high (nice -10 "
                                 "and a core of its own) or realtime (SCHED_RR too; needs 2+ cores and root "
                                 "or CAP_SYS_NICE). What was obtained is in each run's manifest."),
) -> None:
    """Serve the experiments under ROOT (or the bundled examples) to controllers and observers."""
    from .checks import startup_problems
    from .resources import default_data_dir, is_inside_installation, web_dir

    root = serving_root(root, examples)
    problems = startup_problems(web_dir())
    if problems:
        fail("cannot serve:\n  - " + "\n  - ".join(problems))
    from .server.app import LiaisonServer
    from session.clock import InvalidClock, check_clock

    from .server.config import ServerConfig
    from .server.tls import TlsConfigError

    if is_inside_installation(root):
        # Nothing may be written inside site-packages: not even the experiments' bytecode (workers inherit this).
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        sys.dont_write_bytecode = True
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server.logs import redact_tokens

    redact_tokens()
    window: dict[str, Any] = {"fullscr": fullscr, "screen": screen}
    if window_size:
        window["size"] = parse_size(window_size)
    if frame_rate:
        window["frame_rate"] = frame_rate
    try:
        config = ServerConfig(root=root, host=host, port=port, token=token, observer_token=observer_token,
                              no_auth=no_auth, allowed_origins=list(allow_origin), allowed_hosts=list(allow_host),
                              data_dir=data_dir or default_data_dir(root),
                              headless=headless, window=window, params=parse_pairs(param, "--param"),
                              plugins=list(plugin), recovery_wait=recovery_wait,
                              tls=tls, tls_cert=tls_cert, tls_key=tls_key, accept_plaintext=accept_plaintext_risk,
                              max_upload_bytes=max_upload_mb << 20, clock=check_clock(clock),
                              priority=priority)
    except (ValueError, InvalidClock) as exc:
        fail(str(exc))
    if is_inside_installation(config.data_dir):
        fail(f"the data folder {config.data_dir} is inside an installed package; pass --data-dir")
    from liaison.store.datalock import DataDirBusy

    from .plugins.host import PluginLoadError

    try:
        server = LiaisonServer(config)
    except DataDirBusy as exc:
        fail(f"{exc}; use another --data-dir or stop that server")
    except (PluginLoadError, TlsConfigError) as exc:
        fail(str(exc))

    async def main() -> None:
        task = asyncio.create_task(server.serve(install_signals=True))
        while not server.ready.is_set() and not task.done():
            await asyncio.sleep(0.05)
        if server.port is not None:
            print_addresses(config, server, token_given=bool(token))
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
    fingerprint: Optional[str] = typer.Option(None, envvar="LIAISON_FINGERPRINT", help=FINGERPRINT_HELP,
                                              callback=lambda v: checked_fingerprint(v)),
    ca_file: Optional[str] = typer.Option(None, envvar="LIAISON_CA_FILE", help=CA_FILE_HELP),
    timeout: float = typer.Option(3600, help="Give up waiting after this many seconds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the outcome."),
) -> None:
    """Run an experiment on a server and follow it to the end."""
    from .client import Client, LiaisonError

    values = parse_pairs(exp_info, "--exp-info")
    policy = policy_from_options(simulate, sim)
    try:
        with Client(url, token, name="liaison-cli", fingerprint=fingerprint, ca_file=ca_file) as client:
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
    """Print how a run ended and exit: 0 if it completed, ``EXIT_STOPPED`` if stopped or aborted,
    ``EXIT_FAILED`` (with the traceback) if it failed.
    """
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
    fingerprint: Optional[str] = typer.Option(None, envvar="LIAISON_FINGERPRINT", help=FINGERPRINT_HELP,
                                              callback=lambda v: checked_fingerprint(v)),
    ca_file: Optional[str] = typer.Option(None, envvar="LIAISON_CA_FILE", help=CA_FILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, for machines."),
    since: Optional[int] = typer.Option(None, help="Replay events after this sequence number first."),
    count: Optional[int] = typer.Option(None, help="Exit after this many events."),
    idle_timeout: Optional[float] = typer.Option(None, help="Exit after this many seconds without events."),
) -> None:
    """Stream a session's events (as an observer: it cannot change anything)."""
    from .client import Client, LiaisonError

    seen = 0
    try:
        with Client(url, token, role="observer", since=since, name="liaison-watch", fingerprint=fingerprint, ca_file=ca_file) as client:
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
    """One aligned human line for an event: seq, type, run id and the details that matter for it."""
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
    fingerprint: Optional[str] = typer.Option(None, envvar="LIAISON_FINGERPRINT", help=FINGERPRINT_HELP,
                                              callback=lambda v: checked_fingerprint(v)),
    ca_file: Optional[str] = typer.Option(None, envvar="LIAISON_CA_FILE", help=CA_FILE_HELP),
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
        with Client(url, token, role="observer" if observer else "controller", name="liaison-send", fingerprint=fingerprint, ca_file=ca_file) as client:
            typer.echo(json.dumps(client.request(cmd, **parsed), indent=2, default=str))
    except LiaisonError as exc:
        client_error(exc)


@app.command("check-timing")
def check_timing(
    url: str = typer.Argument(..., help="Server URL, e.g. ws://127.0.0.1:8765/"),
    frames: int = typer.Option(300, help="Frames to flip (10-1200)."),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate a rig before a participant arrives: flip the session window, report refresh rate, jitter, drops.

    Exit code 1 when the timing was bad (dropped frames or a frame over 3 refresh periods).
    """
    from .client import Client, LiaisonError

    try:
        with Client(url, token, name="liaison-check-timing") as client:
            report = client.request("check_timing", frames=frames)
    except LiaisonError as exc:
        client_error(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(describe_timing(report))
    if not report.get("timing_ok", True):
        raise typer.Exit(EXIT_FAILED)


def describe_timing(report: dict[str, Any]) -> str:
    """A timing check's report (``check_timing``) as the lines ``liaison check-timing`` prints."""
    iv = report.get("interval_ms") or {}
    prio = report.get("priority") or {}
    lines = [f"refresh rate: {report.get('measured_refresh_hz') or 0:.2f} Hz measured now"
             f" (window reports {report.get('refresh_hz') or 0:.2f} Hz)",
             f"frames: {report.get('frames')} flipped, {report.get('dropped')} dropped "
             f"(interval > {report.get('drop_threshold_ms') or 0:.2f} ms)",
             f"intervals: mean {iv.get('mean') or 0:.3f} ms, jitter (SD) {iv.get('sd') or 0:.3f} ms, "
             f"p99 {iv.get('p99') or 0:.3f} ms, worst {iv.get('max') or 0:.3f} ms",
             f"priority: {prio.get('obtained')} (asked {prio.get('requested')}; {prio.get('policy')}, "
             f"nice {prio.get('nice')}, cpus {prio.get('cpus')})"]
    lines += [f"  note: {note}" for note in prio.get("notes") or []]
    lines.append("timing OK" if report.get("timing_ok") else f"timing BAD: {report.get('timing_problem')}")
    return "\n".join(lines)


@app.command()
def push(
    url: str = typer.Argument(..., help="Server URL, e.g. wss://stimulus-pc:8765/"),
    folder: Path = typer.Argument(..., help="The experiment's folder (.psyexp or .py, conditions, images...)."),
    name: Optional[str] = typer.Option(None, help="Folder name under the server's root [default: FOLDER's name]."),
    replace: bool = typer.Option(False, help="Replace that folder if it exists (the old one is kept aside)."),
    token: Optional[str] = typer.Option(None, envvar="LIAISON_TOKEN", help=TOKEN_HELP),
    fingerprint: Optional[str] = typer.Option(None, envvar="LIAISON_FINGERPRINT", help=FINGERPRINT_HELP,
                                              callback=lambda v: checked_fingerprint(v)),
    ca_file: Optional[str] = typer.Option(None, envvar="LIAISON_CA_FILE", help=CA_FILE_HELP),
) -> None:
    """Deploy an experiment folder to a server: it is unpacked into ROOT/NAME/ and can be run at once."""
    from .client import LiaisonError
    from .client.push import push as push_folder

    try:
        result = push_folder(url, folder, token, name=name, replace=replace, fingerprint=fingerprint,
                             ca_file=ca_file)
    except ValueError as exc:
        fail(str(exc))
    except LiaisonError as exc:
        client_error(exc)
    keys = ", ".join(e["key"] for e in result.get("added", [])) or "none new"
    typer.echo(f"pushed {folder} as {result['folder']}/ ({result['files']} files, {result['bytes']} bytes); "
               f"experiments: {keys}")
    if result.get("replaced"):
        typer.echo(f"  the folder it replaced is kept in {result['replaced']}")


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
    from session.experiments import discover

    if not root.is_dir():
        fail(f"{root} is not a folder")
    rows = [exp.describe(root.resolve()) for exp in discover(root)]
    if listed_plainly(rows, as_json, f"no experiments under {root}"):
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        info = ", ".join(f"{k}={v!r}" for k, v in r["exp_info"].items())
        typer.echo(f"{r['key']:<{width}}  {r['kind']:<6}  {r['path']}  {{{info}}}")


@app.command()
def check(
    root: Path = typer.Argument(..., help="Folder with the experiments."),
    key: Optional[str] = typer.Argument(None, help="Check only this experiment."),
    device: Optional[List[str]] = typer.Option(None, "--device", help="A device name the session will have."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Report what would make experiments under ROOT fail, before any run (compiles; runs nothing).

    Exit code 1 when any experiment has an error-level problem (a missing
    plugin, conditions file, resource or device; a compile failure).
    """
    from session.errors import NotFound
    from session.problems import ERROR, check_root

    if not root.is_dir():
        fail(f"{root} is not a folder")
    try:
        report = check_root(root, key, set(device or ()))
    except NotFound as exc:
        fail(str(exc))
    blocked = any(p["severity"] == ERROR for r in report for p in r["problems"] or [])
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    elif not report:
        typer.echo(f"no experiments under {root}")
    for r in report if not as_json else []:
        errors = [p for p in r["problems"] if p["severity"] == ERROR]
        verdict = "FAIL" if errors else ("warn" if r["problems"] else "ok")
        typer.secho(f"{verdict:<4}  {r['key']}  ({r['path']})",
                    fg=typer.colors.RED if errors else (typer.colors.YELLOW if r["problems"] else None))
        for p in r["problems"]:
            typer.echo(f"      {p['severity']}: {p['code']}: {p['message']}")
    if blocked:
        raise typer.Exit(EXIT_FAILED)


def _journal_or_fail(data_dir: Path, readonly: bool):
    from liaison.store.journal import JOURNAL_FILE, Journal

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
    from session.records import read_manifest, read_status
    from session.timing import short

    journal = _journal_or_fail(data_dir, readonly=True)
    try:
        found = journal.runs(limit)
    finally:
        journal.close()
    for run in found:
        run["folder_status"] = read_status(Path(run["data_dir"])) if run.get("data_dir") else None
        run["timing"] = (read_manifest(Path(run["data_dir"])) or {}).get("timing") if run.get("data_dir") else None
        ended = run["ended"] or None
        run["duration"] = round(ended - run["started"], 3) if ended and run["started"] else None
    if listed_plainly(found, as_json, f"no runs in {data_dir}"):
        return
    typer.echo(f"{'run id':<44} {'experiment':<16} {'status':<9} {'duration':>9} {'rows':>6}  timing")
    for run in found:
        duration = f"{run['duration']:.1f} s" if run["duration"] is not None else "-"
        status = run["folder_status"] or run["status"].upper()
        timing = run["timing"]
        verdict = "" if not timing else " OK" if timing.get("timing_ok") else f" BAD: {timing.get('timing_problem')}"
        typer.echo(f"{run['run_id']:<44} {run['key']:<16} {status:<9} {duration:>9} {run['rows']:>6}  "
                   f"{short(timing)}{verdict}")


@app.command()
def recover(
    data_dir: Path = typer.Argument(..., help="A server's data folder, with no server running on it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Close runs a crash left open: rebuild their CSV from the journal, mark them ABORTED.

    A server does this by itself when it starts; this is for a data folder
    you want to inspect or archive without starting one.
    """
    from liaison.store.datalock import DataDirBusy, DataDirLock
    from session.events import Publisher
    from liaison.store.recovery import recover as recover_runs

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


@app.command()
def fleet(
    config: Path = typer.Argument(..., help="Fleet config (TOML): a \\[fleet] table, one \\[\\[booth]] per booth."),
    store: Optional[str] = typer.Option(None, help="postgresql://... URL or SQLite file (default: from CONFIG)."),
    port: Optional[int] = typer.Option(None, help="Port for the fleet dashboard (default: from CONFIG)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Follow many booths: one fleet dashboard, every booth's data in one central store."""
    from .fleet.cli import run_fleet

    run_fleet(config, store, port, log_level, fail)


app.add_typer(plan_app, name="plan")


def main() -> None:
    """Console entry point: run the CLI (with debug logging when ``LIAISON_DEBUG`` is set)."""
    if os.environ.get("LIAISON_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    app()


if __name__ == "__main__":
    main()
