#!/usr/bin/env python
"""The fleet service under many booths: ingest into PostgreSQL, end-to-end lag, dashboard updates.

    .venv/bin/python scripts/bench_fleet.py [--quick] [--booths 10,50,200] [--store postgresql://...]

For each fleet size: a throw-away PostgreSQL cluster database (or ``--store``),
one light process of simulated booths speaking the real booth protocol
(``scripts/fleet_sim.py``: a recorded rt_demo run replayed, 100 rows/s per
booth by default), a real ``liaison fleet`` process following all of them,
and one dashboard connected to it. After a warm-up it measures, over a
window:

- ingest rate: data rows committed to PostgreSQL per second (counted in the
  database), against the rate offered;
- end-to-end lag: from the moment a simulated booth sent a row to the
  commit of the transaction holding it (the fleet's 1 ms histogram, p50/p99);
- dashboard update rate: update messages and tile updates per second that
  one connected dashboard received;
- completeness: after the booths stop, every row they sent is in the
  database exactly once.

Goal (issue 16): 200 booths x 100 rows/s ingested with p99 lag < 1 s on this 2-core machine.
Prints a table and writes ``artifacts/bench_fleet.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "tests"))

import psycopg  # noqa: E402
import websockets  # noqa: E402
from pgcluster import PostgresCluster, free_port  # noqa: E402

from liaison.fleet.writer import percentile  # noqa: E402

TOKEN = "bench-fleet-token-0123"
SIM_TOKEN = "sim-token-0123456789"


def liaison() -> list[str]:
    script = Path(sys.executable).parent / "liaison"
    return [str(script)] if script.exists() else [sys.executable, "-m", "liaison.cli"]


def stats(port: int) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/stats",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


class Dashboard:
    """One fleet dashboard client in a thread of its own, counting what it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.updates = 0
        self.tiles = 0
        self.stop = False
        import threading

        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.thread.start()

    async def run(self) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{self.port}/", max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
            while not self.stop:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except (asyncio.TimeoutError, TimeoutError):
                    continue
                except websockets.exceptions.ConnectionClosed:
                    return
                if message.get("type") == "update":
                    self.updates += 1
                    self.tiles += len(message["booths"])


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def postgres_pids(cluster: PostgresCluster | None) -> list[int]:
    """The postmaster and all its children (backends, writer, WAL writer...)."""
    if cluster is None:
        return []
    try:
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError):
        return []
    return [postmaster, *children(postmaster)]


def cpu_of(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def hist_diff(after: dict, before: dict) -> list[int]:
    bins = [0] * 60_000
    for ms, n in after.items():
        bins[int(ms)] += n - int(before.get(ms, 0))
    return bins


def rows_in(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM data_rows").fetchone()[0]


def profilers(spy: str | None, pids: dict[str, int], seconds: float, out: Path, booths: int) -> list:
    """py-spy (``--py-spy``) sampling each process over the window: collapsed stacks, one file each."""
    if not spy:
        return []
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
                              "--format", "raw", "--nonblocking", "-o", str(out / f"{name}-{booths}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def one_size(base_url: str, booths: int, rate: float, warmup: float, window: float, work: Path,
             cluster: PostgresCluster | None = None, spy: str | None = None,
             profile_dir: Path | None = None) -> dict:
    database = f"bench_{booths}_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    url = base_url.rsplit("/", 1)[0] + f"/{database}"
    sim = subprocess.Popen([sys.executable, str(PROJECT / "scripts" / "fleet_sim.py"), "--booths", str(booths),
                            "--rows-per-second", str(rate), "--token", SIM_TOKEN],
                           stdout=subprocess.PIPE, text=True)
    fleet = None
    try:
        ports = json.loads(sim.stdout.readline())["ports"]
        config = work / f"fleet-{booths}.toml"
        port = free_port()
        lines = [f'[fleet]\nport = {port}\ntoken = "{TOKEN}"\nsilent_after = 60\n']
        lines += [f'[[booth]]\nname = "sim-{i:03d}"\nurl = "ws://127.0.0.1:{p}/"\ntoken = "{SIM_TOKEN}"\n'
                  for i, p in enumerate(ports)]
        config.write_text("\n".join(lines))
        log = open(work / f"fleet-{booths}.log", "w")
        fleet = subprocess.Popen([*liaison(), "fleet", str(config), "--store", url, "--log-level", "warning"],
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        wait(lambda: (fleet.stdout.readline() or "").startswith("Press Ctrl+C") or fleet.poll() is not None,
             60, "the fleet service")
        wait(lambda: stats(port)["connected"] == booths, 120, f"{booths} booths connected")
        dashboard = Dashboard(port)
        wait(lambda: stats(port)["dashboards"] == 1, 30, "the dashboard")
        sim.send_signal(signal.SIGUSR1)
        time.sleep(warmup)  # the warm-up is a duration, not a condition
        # The fleet's CPU includes its store writer process.
        groups = {"fleet": [fleet.pid, *children(fleet.pid)], "simulator": [sim.pid],
                  "postgresql": postgres_pids(cluster)}
        s0, c0, d0, t0 = stats(port), rows_in(url), (dashboard.updates, dashboard.tiles), time.monotonic()
        cpu0 = cpu_of(groups)
        spied = {"fleet": fleet.pid, "simulator": sim.pid, **{f"fleet-child{i}": pid for i, pid in
                                                                enumerate(children(fleet.pid))}}
        spies = profilers(spy, spied, window, profile_dir or work, booths)
        time.sleep(window)
        s1, c1, d1, t1 = stats(port), rows_in(url), (dashboard.updates, dashboard.tiles), time.monotonic()
        cpu1 = cpu_of(groups)
        for process in spies:
            process.wait(60)
        groups["postgresql"] = postgres_pids(cluster)  # backends that started meanwhile are not counted
        sim.send_signal(signal.SIGTERM)
        sent = json.loads(sim.stdout.readline())  # it stopped sending; it still serves replays
        began = time.monotonic()
        try:
            wait(lambda: rows_in(url) >= sent["sent_rows"], 180, "every sent row in PostgreSQL", interval=0.5)
            drained = time.monotonic() - began
        except RuntimeError:
            drained = None
        final = rows_in(url)
        with psycopg.connect(url) as conn:
            duplicates = conn.execute("SELECT COUNT(*) FROM (SELECT booth, session_id, run_id, row_index "
                                      "FROM data_rows GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1) d").fetchone()[0]
        dashboard.stop = True
        sim.send_signal(signal.SIGTERM)
        lags = hist_diff(s1["lag_histogram_ms"], s0["lag_histogram_ms"])
        elapsed = t1 - t0
        return {
            "booths": booths, "rows_per_s_per_booth": rate, "offered_rows_per_s": booths * rate,
            "window_s": round(elapsed, 2),
            "ingest_rows_per_s": round((c1 - c0) / elapsed, 1),
            "lag_p50_s": percentile(lags, 50), "lag_p99_s": percentile(lags, 99),
            "lag_max_s": percentile(lags, 100),
            "dashboard_updates_per_s": round((d1[0] - d0[0]) / elapsed, 2),
            "dashboard_tiles_per_s": round((d1[1] - d0[1]) / elapsed, 1),
            "commits_per_s": round((s1["commits"] - s0["commits"]) / elapsed, 1),
            "backlog_at_end": s1["backlog"],
            "fleet_gc_collections_per_s": [round((b - a) / elapsed, 1) for a, b in zip(s0.get("gc_collections", []),
                                                                                     s1.get("gc_collections", []))],
            "sent_rows": sent["sent_rows"], "stored_rows": final, "duplicate_rows": duplicates,
            "complete": final == sent["sent_rows"] and duplicates == 0,
            "drain_s": None if drained is None else round(drained, 2),
            "sent_rows_per_s": round(sent["sent_rows"] / sent["duration"], 1),
            # CPU cost per 1000 rows ingested in the window: what the machine's load cannot distort much.
            "cpu_ms_per_1000_rows": {name: round(1000 * 1000 * (cpu1[name] - cpu0[name]) / max(1, c1 - c0), 1)
                                     for name in cpu0},
            "cpu_share_in_window": {name: round((cpu1[name] - cpu0[name]) / elapsed, 2) for name in cpu0},
            "sim_late_ticks": sent["late_ticks"], "sim_ticks": sent["ticks"],
            "load_average": os.getloadavg(),
        }
    finally:
        for process in (sim, fleet):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (a smoke run, not for the figures)")
    parser.add_argument("--booths", default="10,50,200")
    parser.add_argument("--rate", type=float, default=100.0, help="rows per second per booth")
    parser.add_argument("--store", help="a PostgreSQL URL whose server may create databases [default: a "
                                        "throw-away cluster]")
    parser.add_argument("--py-spy", help="path of a py-spy binary: sample the fleet and the simulator in the window")
    parser.add_argument("--profile-dir", default=str(PROJECT / "artifacts" / "profiles"))
    parser.add_argument("--window", type=float, help="seconds measured [default: 20, 4 with --quick]")
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench_fleet.json"))
    args = parser.parse_args()
    warmup, window = (2.0, 4.0) if args.quick else (5.0, 20.0)
    window = args.window or window
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the cluster and children on the way out
    cluster = None
    if args.store:
        base_url = args.store
    else:
        cluster = PostgresCluster().start()
        base_url = cluster.url
    work = Path(cluster.base if cluster else PROJECT / "artifacts")
    results = []
    try:
        for booths in [int(n) for n in args.booths.split(",")]:
            try:
                result = one_size(base_url, booths, args.rate, warmup, window, work, cluster, args.py_spy,
                                  Path(args.profile_dir))
            except Exception as exc:  # noqa: BLE001 - report the sizes that worked, and why this one did not
                results.append({"booths": booths, "error": repr(exc)})
                print(f"{booths:>4} booths: FAILED {exc!r}", flush=True)
                continue
            results.append(result)
            print(f"{booths:>4} booths: offered {result['offered_rows_per_s']:>8.0f} rows/s, ingested "
                  f"{result['ingest_rows_per_s']:>8.0f} rows/s, lag p50 {result['lag_p50_s']} s p99 "
                  f"{result['lag_p99_s']} s, dashboard {result['dashboard_updates_per_s']} updates/s "
                  f"({result['dashboard_tiles_per_s']} tiles/s), complete {result['complete']} "
                  f"(drained in {result['drain_s']} s); CPU ms per 1000 rows {result['cpu_ms_per_1000_rows']}",
                  flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    goal = next((r for r in results if r["booths"] == 200 and "error" not in r), None)
    report = {
        "benchmark": "bench_fleet", "quick": args.quick, "time": time.time(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "goal": "200 booths x 100 rows/s ingested, p99 lag < 1 s",
        "goal_met": None if goal is None else bool(
            goal["ingest_rows_per_s"] >= 0.97 * goal["offered_rows_per_s"] and goal["lag_p99_s"] is not None
            and goal["lag_p99_s"] < 1.0 and goal["complete"]),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"goal met: {report['goal_met']}; wrote {out}")


if __name__ == "__main__":
    main()
