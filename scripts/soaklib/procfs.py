"""What /proc says about a process: state, CPU ticks, memory, command line, children, group.

Linux only, read directly (the numbers are exactly the kernel's, e.g. VmRSS
and RssAnon): the soak watches the server, its worker and Xvfb from
outside, as an operator would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> dict[str, int] | None:
    """ppid, pgid and CPU ticks (user + system) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return {"state": fields[0], "ppid": int(fields[1]), "pgid": int(fields[2]),
            "cpu_ticks": int(fields[11]) + int(fields[12])}


def proc_memory(pid: int) -> dict[str, float] | None:
    """VmRSS, RssAnon, VmHWM (MB) and thread count of ``pid``."""
    wanted = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "VmHWM": "hwm_mb", "Threads": "threads"}
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in wanted:
                    parts = value.split()
                    out[wanted[name]] = int(parts[0]) / 1024 if name != "Threads" else int(parts[0])
    except OSError:
        return None
    return out or None


def proc_cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def proc_children(pid: int) -> list[int]:
    """Children of ``pid``: /proc/PID/task/*/children, else a scan of /proc/*/stat."""
    found: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            try:
                found.update(int(p) for p in (task / "children").read_text().split())
            except OSError:
                pass
        if found:
            return sorted(found)
    except OSError:
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat["ppid"] == pid:
                found.add(int(entry.name))
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (the server's own group: it and its descendants)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat["pgid"] == pgid and stat["state"] != "Z":
                members.append(int(entry.name))
    return sorted(members)




class CpuMeter:
    """CPU use of processes between two readings, in percent of one core."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[float, int]] = {}

    def percent(self, label: str, pid: int | None) -> float | None:
        """Percent of one core ``pid`` used since the last call for the same label and pid (None the first time)."""
        stat = proc_stat(pid) if pid else None
        if stat is None:
            return None
        now = time.monotonic()
        previous = self._previous.get(f"{label}:{pid}")
        self._previous[f"{label}:{pid}"] = (now, stat["cpu_ticks"])
        if previous is None or now <= previous[0]:
            return None
        return round((stat["cpu_ticks"] - previous[1]) / CLK_TCK / (now - previous[0]) * 100, 1)
