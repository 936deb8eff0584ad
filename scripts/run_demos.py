"""Run every Builder demo that ships with PsychoPy through a real ``liaison serve``.

The 50 demos in ``psychopy/demos/builder/`` are real experiments nobody here
wrote. They are copied into a temporary root, served on loopback, and each
is driven like an experimenter would: ``run``, wait for its end within a
bounded deadline, ``stop`` it if it is still going (it waits for a key
press or a long timer), ``abort`` if even that fails. Each demo is reported as

- ``ran``: the run completed, or ran until stopped (it waited for input);
- ``refused``: Liaison refused the run before it started, naming its problems;
- ``failed``: the run started and raised;

and every demo that did not run gets a reason: ``plugin`` (a component from
a PsychoPy plugin that is not installed), ``hardware`` (a device, port or
driver this machine lacks), ``files`` or ``other``. Results go to
``artifacts/run_demos.json``.

    PYTHONPATH=$PWD .venv/bin/python scripts/run_demos.py [--wait 12] [--only KEY ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from liaison.client import Client, LiaisonError  # noqa: E402

TOKEN = "run-demos-token-0123456789"
HARDWARE_WORDS = ("serial", "parallel", "pylsl", "lsl", "eyetrack", "eye tracker", "iohub", "camera", "microphone",
                  "device", "port", "egi", "pump", "libjack", "audio", "sound", "webcam", "tobii", "gaze")
PLUGIN_WORDS = ("plugin", "psychopy-")


def demos_dir() -> Path:
    import psychopy

    return Path(psychopy.__file__).parent / "demos" / "builder"


def classify(text: str, problems: list[dict] | None = None) -> str:
    codes = {p["code"] for p in problems or [] if p.get("severity") == "error"}
    if "plugin_missing" in codes:
        return "plugin"
    if "device_missing" in codes:
        return "hardware"
    if codes & {"conditions_missing", "resource_missing"}:
        return "files"
    lowered = text.lower()
    if any(word in lowered for word in PLUGIN_WORDS):
        return "plugin"
    if any(word in lowered for word in HARDWARE_WORDS):
        return "hardware"
    if "nameerror" in lowered:  # a component class missing at run time: its plugin is absent
        return "plugin"
    return "other"


def start_serve(root: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    script = Path(sys.executable).parent / "liaison"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "liaison.cli"]
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [*command, "serve", str(root), "--port", "0", "--data-dir", str(data_dir), "--token", TOKEN,
         "--window-size", "640x480", "--frame-rate", "60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    url = None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.strip().startswith("WebSocket:"):
            url = line.split(":", 1)[1].split()[0]
        if line.startswith("Press Ctrl+C") and url:
            return process, url
    process.kill()
    raise SystemExit("liaison serve did not start")


def wait_inspected(client: Client, timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        listed = {e["key"]: e for e in client.list_experiments()}
        if all(e["problems"] is not None for e in listed.values()) or time.monotonic() > deadline:
            return listed
        time.sleep(1.0)


def end_of(run, timeout: float):
    """The run's run_finished/run_failed event, or None if it has not ended within ``timeout`` s."""
    try:
        return run.wait(timeout=timeout)
    except (TimeoutError, asyncio.TimeoutError):
        return None


def drive(client: Client, key: str, info: dict, wait: float) -> dict:
    problems = info.get("problems") or []
    started = time.monotonic()
    try:
        run = client.run(key, {"participant": "demo"})
    except LiaisonError as exc:
        refused = (exc.details or {}).get("problems", problems) if isinstance(exc.details, dict) else problems
        return {"result": "refused", "reason": classify(exc.message, refused), "error": exc.message,
                "problems": refused}
    end = end_of(run, wait)
    action = "ended by itself"
    if end is None:
        action = "stopped after waiting"
        try:
            client.stop()
        except LiaisonError:
            pass
        end = end_of(run, 20)
    if end is None:
        action = "aborted"
        try:
            client.abort(grace=2.0)
        except LiaisonError:
            pass
        end = end_of(run, 120)
    record = {"run_id": run.run_id, "action": action, "seconds": round(time.monotonic() - started, 1),
              "warnings": [p["code"] for p in problems if p.get("severity") == "warning"]}
    if end is None:
        return {**record, "result": "failed", "reason": "other", "error": "the run never ended"}
    if end.event == "run_failed":
        error = end.data.get("error", "")
        return {**record, "result": "failed", "reason": classify(error + end.data.get("traceback", "")),
                "error": error, "rows": end.data.get("rows")}
    outcome = end.data.get("outcome")
    result = "ran" if outcome in ("completed", "stopped") else "failed"
    return {**record, "result": result, "outcome": outcome, "rows": end.data.get("rows"),
            **({} if result == "ran" else {"reason": "other", "error": f"outcome {outcome}"})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait", type=float, default=12.0, help="seconds to let a demo run before stopping it")
    parser.add_argument("--only", nargs="*", help="only these experiment keys")
    parser.add_argument("--out", type=Path, default=PROJECT / "artifacts" / "run_demos.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="liaison-demos-"))
    root = base / "root"
    shutil.copytree(demos_dir(), root, ignore=shutil.ignore_patterns("__pycache__", "__init__.py", "data"))
    process, url = start_serve(root, base / "data")
    results: dict[str, dict] = {}
    began = time.monotonic()
    try:
        with Client(url, TOKEN, reconnect=False, name="run_demos") as client:
            listed = wait_inspected(client, timeout=600)
            keys = sorted(k for k in listed if not args.only or k in args.only)
            for number, key in enumerate(keys, 1):
                info = listed[key]
                outcome = {"path": info["path"], **drive(client, key, info, args.wait)}
                results[key] = outcome
                print(f"[{number:2}/{len(keys)}] {key:<45} {outcome['result']:<8} "
                      f"{outcome.get('reason', '') or outcome.get('action', '')}"
                      f"  {(outcome.get('error') or '')[:90]}", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(base, ignore_errors=True)
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for outcome in results.values():
        counts[outcome["result"]] = counts.get(outcome["result"], 0) + 1
        if outcome["result"] != "ran":
            reasons[outcome["reason"]] = reasons.get(outcome["reason"], 0) + 1
    summary = {"demos": len(results), "counts": counts, "not_run_because": reasons,
               "seconds": round(time.monotonic() - began, 1), "wait": args.wait, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
