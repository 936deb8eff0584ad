"""One sample every interval: memory and CPU of each process, journal size, rows, round trips, lag.

Each sample is appended to :attr:`Sampler.samples` (the report's time series)
and printed as one console line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .peer import Peer
from .procfs import CpuMeter, proc_children, proc_cmdline, proc_memory
from .server import ServerProcess
from .stats import MB, fmt, summary_ms


def journal_bytes(data_dir: Path) -> int:
    """The journal's size on disk: journal.sqlite plus its write-ahead log."""
    total = 0
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        try:
            total += (data_dir / name).stat().st_size
        except OSError:
            pass
    return total


class Sampler:
    """Takes and prints samples of one server; notices when its session worker is replaced.

    ``worker_pids`` lists every worker seen (the first one found at start-up
    first); a replacement is appended to ``problems``: the worker died or was
    killed.
    """

    def __init__(self, server: ServerProcess, data_dir: Path, worker_pids: list[int], problems: list[str]) -> None:
        self.server = server
        self.data_dir = data_dir
        self.worker_pids = worker_pids
        self.problems = problems
        self.samples: list[dict[str, Any]] = []
        self._cpu = CpuMeter()

    def take(self, phase: str, t: float, observers: list[Peer], controller: Peer,
             rtt_window: dict[str, list[float]]) -> dict[str, Any]:
        """Sample now, ``t`` s into the run, in ``phase`` (idle, run or after); the peers' lag windows restart.

        ``rtt_window`` holds the command round trips (seconds) since the last sample.
        """
        worker = self.server.worker_pid()
        if worker is not None and worker not in self.worker_pids:
            self.worker_pids.append(worker)
            self.problems.append(f"the session worker was replaced (pid {self.worker_pids[-2]} -> {worker}) "
                                 f"at t={t:.0f} s: it died or was killed")
        xvfb = next((p for p in (proc_children(worker) if worker else []) if "Xvfb" in " ".join(proc_cmdline(p))),
                    None)
        procs = {"server": self.server.pid, "worker": worker, "xvfb": xvfb, "soak": os.getpid()}
        memory = {}
        for label, pid in procs.items():
            info = proc_memory(pid) if pid else None
            if info is not None:
                info = {k: round(v, 2) if isinstance(v, float) else v for k, v in info.items()}
                info["pid"] = pid
                info["cpu_percent"] = self._cpu.percent(label, pid)
            memory[label] = info
        previous = next((s for s in reversed(self.samples) if s["phase"] != "idle"), None)
        rows = [p.rows for p in observers]
        lags = [lag for p in observers for lag in p.take_lags()]
        controller.take_lags()
        rtt = {cmd: summary_ms([v * 1000 for v in values]) for cmd, values in rtt_window.items()}
        every = [v * 1000 for values in rtt_window.values() for v in values]
        sample = {
            "phase": phase, "t": round(t, 3), "wall": round(time.time(), 3), "memory": memory,
            "journal_bytes": journal_bytes(self.data_dir), "rows_per_client": rows,
            "controller_rows": controller.rows,
            "rtt_ms": {"all": summary_ms(every), **rtt},
            "lag_ms": summary_ms([v * 1000 for v in lags]),
            "loadavg": os.getloadavg(),
        }
        if phase == "run" and previous is not None and t > previous["t"] and rows and previous["rows_per_client"]:
            sample["rows_per_second"] = round((min(rows) - min(previous["rows_per_client"])) / (t - previous["t"]), 1)
        self.samples.append(sample)
        self.print(sample, observers)
        return sample

    def print(self, s: dict[str, Any], observers: list[Peer]) -> None:
        """One console line: RSS (and change since the run's first sample), journal, rows, rtt, lag, CPU."""
        mem = s["memory"]
        first = next((x for x in self.samples if x["phase"] == "run"), None)

        def rss(label: str) -> str:
            info = mem.get(label)
            if not info:
                return f"{label} {'gone':>8}"
            text = f"{label} {info['rss_mb']:6.1f} MB"
            base = (first or {}).get("memory", {}).get(label) if first is not None and first is not s else None
            if base:
                text += f" ({info['rss_mb'] - base['rss_mb']:+6.1f})"
            return text

        rows = s["rows_per_client"]
        lost = sum(p.lost for p in observers)
        dup = sum(p.duplicated for p in observers)
        rows_text = (f"rows/client {min(rows)}" + (f"-{max(rows)}" if max(rows) != min(rows) else "")
                     if rows else f"rows {s['controller_rows']}")
        if "rows_per_second" in s:
            rows_text += f" ({s['rows_per_second']:.0f}/s)"
        rtt, lag = s["rtt_ms"]["all"], s["lag_ms"]
        cpu = "/".join(fmt((mem.get(k) or {}).get("cpu_percent"), ".0f") for k in ("server", "worker"))
        label = {"idle": "idle", "run": f"{s['t']:5.0f}s", "after": "after"}[s["phase"]]
        print(f"[{label:>6}] {rss('server')}  {rss('worker')}  journal {s['journal_bytes'] / MB:6.1f} MB | "
              f"{rows_text} lost {lost} dup {dup} | cmd rtt p50 {fmt(rtt['p50'])} p99 {fmt(rtt['p99'])} ms "
              f"(n={rtt['n']}) | lag p50 {fmt(lag['p50'])} p99 {fmt(lag['p99'])} ms | cpu srv/wrk {cpu}%",
              flush=True)
