"""The soak's report: everything measured as JSON, and the summary printed at the end."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .stats import fmt, summary_ms

if TYPE_CHECKING:
    from .soak import Soak

REPO = Path(__file__).resolve().parents[2]


def write_report(soak: Soak, out: Path) -> dict[str, Any]:
    """Write everything ``soak`` measured to ``out`` as JSON, print the summary; the report."""
    memory = soak.memory_summary() if soak.samples else {}
    per_cmd = {cmd: summary_ms([v * 1000 for v in values]) for cmd, values in soak.load.rtt_all.items()}
    result = {
        "status": soak.status,
        "config": {"minutes": soak.args.minutes, "rate": soak.args.rate, "clients": soak.args.clients,
                   "cmd_rate": soak.args.cmd_rate, "interval_s": soak.interval, "warmup_s": soak.warmup,
                   "server_command": soak.server.command if soak.server else None,
                   "experiment_seconds": soak.seconds},
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "loadavg_start": soak.loadavg_start,
                        "loadavg_end": os.getloadavg(), "git": git_head(),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(soak.started_at))},
        "temp_dir": str(soak.tmp) if soak.tmp else None,
        "calibration": soak.calibration,
        "run": soak.run_info,
        "memory": memory,
        "rows": soak.checks.get("rows"),
        "journal": soak.checks.get("journal"),
        "csv": soak.checks.get("csv"),
        "commands": {"sent": soak.load.sent, "errors": soak.load.errors[:50],
                     "timeouts": soak.load.timeouts, "rtt_ms": per_cmd},
        "clients": [p.describe() for p in soak.observers],
        "controller": soak.controller.describe() if soak.controller else None,
        "worker_pids": soak.worker_pids,
        "server_exit": soak.checks.get("server_exit"),
        "server_log": soak.checks.get("server_log"),
        "samples": soak.samples,
        "notes": soak.notes,
        "problems": soak.problems,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print_summary(soak, result, out)
    return result


def print_summary(soak: Soak, r: dict[str, Any], out: Path) -> None:
    """The end of the console output: memory table, rows, commands, the run's end, the server's exit, problems."""
    print()
    print(f"== soak summary: {soak.args.minutes:g} min at {soak.args.rate:g} rows/s, {soak.args.clients} "
          f"observers, status: {soak.status} ==")
    memory = r["memory"]
    if memory:
        print(f"memory (VmRSS, MB)  idle    start@{fmt(memory['server']['start_t'], '.0f')}s     end   delta"
              "   slope MB/min   by design MB/min   unexplained   after run")
        for label in ("server", "worker"):
            m = memory[label]
            expected = m.get("expected_slope_mb_per_min")
            print(f"  {label:<16} {fmt(m['idle_mb']):>6} {fmt(m['start_mb']):>12} {fmt(m['end_mb']):>7} "
                  f"{fmt(m['delta_mb'], '+.1f'):>7} {fmt(m['slope_mb_per_min'], '+.2f'):>14} "
                  f"{fmt(expected, '+.2f'):>18} {fmt(m['unexplained_slope_mb_per_min'], '+.2f'):>13} "
                  f"{fmt(m['after_run_mb']):>11}")
        if "recent_slope_mb_per_min" in memory["server"]:
            print(f"  last {(memory['server']['end_t'] - memory['server']['recent_from_t']) / 60:.1f} min: "
                  + "; ".join(f"{label} {fmt(memory[label].get('recent_slope_mb_per_min'), '+.2f')} MB/min "
                              f"(by design {fmt(memory[label].get('recent_expected_slope_mb_per_min'), '+.2f')}, "
                              f"unexplained {fmt(memory[label].get('recent_unexplained_slope_mb_per_min'), '+.2f')})"
                              for label in ("server", "worker") if "recent_slope_mb_per_min" in memory[label]))
        replay = memory["expected"]["server"]
        print(f"  by design: server: {replay['what']}"
              + (f" (full after ~{replay['full_after_min']:.1f} min, at ~{replay['cap_mb']:.0f} MB)"
                 if replay.get("full_after_min") else ""))
        print(f"             worker: {memory['expected']['worker']['what']}")
        print(f"  journal: {fmt(memory['journal']['end_mb'])} MB at the end, "
              f"{fmt(memory['journal']['slope_mb_per_min'], '+.2f')} MB/min")
    rows = r.get("rows") or {}
    if rows:
        per_client = rows.get("per_client") or []
        clients_text = (f"{per_client[0]} per client (all {len(per_client)} equal)"
                        if per_client and len(set(per_client)) == 1 else f"per client {per_client}")
        print(f"rows: expected {rows.get('expected')} [{rows.get('expected_basis')}], run_finished "
              f"{rows.get('run_finished')}, {clients_text}, journal {(r.get('journal') or {}).get('rows')}, "
              f"csv {(r.get('csv') or {}).get('rows')}")
    lost = sum(p.lost for p in soak.observers)
    dup = sum(p.duplicated for p in soak.observers)
    seq = sum(p.seq_gaps + p.seq_repeats for p in soak.observers)
    print(f"rows lost {lost}, duplicated {dup} (all clients); seq anomalies {seq}; disconnects "
          f"{sum(1 for p in soak.observers if p.closed and p.closed.get('code') not in (1000, None))}")
    cmds = r["commands"]
    print(f"commands: {cmds['sent']} sent, {len(soak.load.errors)} errors, {cmds['timeouts']} timeouts; "
          + ", ".join(f"{c} p50 {fmt(v['p50'], '.2f')} p99 {fmt(v['p99'], '.2f')} max {fmt(v['max'], '.1f')} ms"
                      for c, v in cmds["rtt_ms"].items()))
    if "stop_to_end_s" in soak.run_info:
        print(f"run: {soak.run_info.get('end_event')} {soak.run_info['end'].get('outcome', '')}, "
              f"{soak.run_info['stop_to_end_s']:.1f} s from stop to run_finished (includes writing the CSV)")
    ex = r.get("server_exit") or {}
    if ex:
        print(f"server: exit code {ex.get('code')} {ex.get('seconds')} s after SIGTERM"
              f"{' (killed)' if ex.get('killed') else ''}; left behind: {ex.get('left_behind') or 'nothing'}; "
              f"log warnings/errors: {(r.get('server_log') or {}).get('warning_lines')}")
    for note in soak.notes:
        print(f"note: {note}")
    if soak.problems:
        print(f"PROBLEMS ({len(soak.problems)}):")
        for problem in soak.problems:
            print(f"  - {problem}")
    else:
        print("no problems found")
    print(f"report: {out}")


def git_head() -> str | None:
    """The commit the soak ran on (None outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None
