"""How much of the machine the bench did *not* have: CPU used by other processes, and steal.

On a 2-core machine another workload (a test suite, a soak run, another
bench) changes every number here, tails and frame timing most. The meter
takes system-wide busy CPU time (``psutil.cpu_times``) and subtracts what
the bench's own process tree used (this process, the server hosts, their
workers, Xvfb); the rest is foreign. Before each measure the bench waits
(bounded) for the foreign load to drop, and every measure records what it
saw, so a disturbed number is flagged instead of trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

QUIET_CORES = 0.15  # foreign load below this (in cores) counts as quiet


@dataclass
class Sample:
    at: float
    busy: float
    steal: float
    own: float


def _own_cpu() -> float:
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def sample() -> Sample:
    cpu = psutil.cpu_times()
    idle = cpu.idle + getattr(cpu, "iowait", 0.0)
    total = sum(cpu)
    steal = getattr(cpu, "steal", 0.0)
    return Sample(at=time.monotonic(), busy=total - idle - steal, steal=steal, own=_own_cpu())


def between(a: Sample, b: Sample) -> dict[str, float]:
    """Foreign CPU seconds (and in cores), steal, and own CPU between two samples."""
    wall = max(1e-9, b.at - a.at)
    foreign = max(0.0, (b.busy - a.busy) - (b.own - a.own))
    return {"wall_s": round(wall, 2), "foreign_cpu_s": round(foreign, 2),
            "foreign_cores": round(foreign / wall, 3), "steal_s": round(b.steal - a.steal, 2),
            "own_cpu_s": round(b.own - a.own, 2)}


class QuietWaiter:
    """Wait, within a total budget, until other processes leave the CPU to the bench."""

    def __init__(self, budget_s: float, per_step_s: float) -> None:
        self.budget = budget_s
        self.per_step = per_step_s
        self.waited = 0.0

    def wait(self, window: float = 0.5) -> dict[str, float]:
        """Returns how long it waited and the foreign load of the last window."""
        started = time.monotonic()
        limit = min(self.per_step, max(0.0, self.budget - self.waited))
        while True:
            a = sample()
            time.sleep(window)
            seen = between(a, sample())
            spent = time.monotonic() - started
            if seen["foreign_cores"] < QUIET_CORES or spent >= limit:
                self.waited += spent
                return {"waited_s": round(spent, 1), "foreign_cores_before": seen["foreign_cores"]}
