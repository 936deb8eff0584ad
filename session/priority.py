"""Give the experiment's thread the CPU first: a raised priority and, for ``realtime``, a core of its own.

The worker's main thread runs the experiment's frames; it must never wait
for the CPU. Like PsychoPy's ``core.rush()`` and lab practice:

- ``high`` (the default): that thread gets nice -10; the worker's control
  threads (receiver, sender) nice -5, so that when the experiment waits for
  them to hand back the interpreter lock they are not queued behind the
  server; and with ``sched_autogroup`` (each terminal session is one
  scheduling group, in which nice alone counts) the session's group gets
  nice -10 too, or a compile in another terminal would still take half the CPU
  (given back by :func:`restore_session_group` when the worker exits);
- ``realtime`` adds the ``SCHED_RR`` policy (it preempts every normal thread
  at once) and, with two or more cores, pins the experiment to one core (the
  last: core 0 takes most interrupts) while the server process and its
  threads (event loop, journal writer) and the worker's control threads are
  kept off it. What a frame waits on, the control threads (their hand-back of
  the interpreter lock) and the display server we started, get ``SCHED_RR``
  just below the experiment, on the other cores. Realtime is only granted with a core to spare, so a
  busy-looping experiment (unpaced flips under Xvfb) starves only its own
  core while the server, the pipe reader and signal delivery live on the
  others; ``SCHED_RESET_ON_FORK`` stops threads the experiment starts from
  inheriting the policy; the kernel's real-time throttling (5 % a second by
  default) still applies. With one core it falls back to ``high``, and says so;
- ``normal`` changes nothing.

Why ``high`` does not pin: measured on a shared 2-core VM, pinning made
frames later whenever other work saturated the remaining core, because a
flip waits on things that live there (the display server's round trip, the
control threads' hand-back of the interpreter lock).

Anything not permitted (no ``CAP_SYS_NICE``, an ``RLIMIT_RTPRIO`` of 0, a
container's cpuset) degrades to what is and is recorded in the report, never
raised: timing is reported, not assumed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable

LEVELS = ("normal", "high", "realtime")
DEFAULT_LEVEL = "high"
EXPERIMENT_NICE = -10
HELPER_NICE = -5
RT_PRIORITY = 10  # SCHED_RR priority 1..99: above every normal thread, below the kernel's own (50 and up)
HELPER_RT_PRIORITY = 5  # realtime: what the experiment waits on (control threads, display server), below it

_requested: dict[str, Any] = {"level": "normal", "notes": []}  # what the last raise asked for and met


@dataclass(frozen=True)
class CorePlan:
    """Which cores the experiment's thread gets and which everything else gets."""

    experiment: tuple[int, ...]
    others: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        """The plan as JSON-able lists (it crosses the pipe to the worker)."""
        return {"experiment": list(self.experiment), "others": list(self.others)}

    @classmethod
    def from_dict(cls, data: dict[str, Iterable[int]] | None) -> "CorePlan | None":
        """The plan back from :meth:`to_dict` (None for none)."""
        if not data:
            return None
        return cls(tuple(data["experiment"]), tuple(data["others"]))


def plan_cores(cpus: Iterable[int] | None = None) -> CorePlan | None:
    """Split the usable cores: the last for the experiment, the rest for the others (None below 2)."""
    usable = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    return CorePlan(experiment=(usable[-1],), others=tuple(usable[:-1]))


_machine_plan: list = []  # cached: the first plan of this process, before anything here was pinned


def machine_plan() -> CorePlan | None:
    """:func:`plan_cores` of this process's cores as they were at the first call (pinning shrinks them)."""
    if not _machine_plan:
        _machine_plan.append(plan_cores())
    return _machine_plan[0]


def check_level(level: str) -> str:
    """``level`` if it is normal, high or realtime; else ValueError naming the choices."""
    if level not in LEVELS:
        raise ValueError(f"priority must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def raise_experiment_thread(level: str, plan: CorePlan | None) -> dict[str, Any]:
    """Give the calling thread (the experiment's) the CPU first, as far as permitted; returns :func:`report`.

    Call it on the experiment's thread before it opens the window, so the GL
    driver's threads start on the same core.
    """
    check_level(level)
    notes: list[str] = []
    if level == "realtime":
        if plan is None:
            notes.append("one core only: the experiment's thread shares it with the server")
        else:
            try:
                os.sched_setaffinity(0, plan.experiment)
            except OSError as exc:
                notes.append(f"could not pin the experiment to core {plan.experiment}: {_why(exc)}")
    if level != "normal":
        notes += _raise_autogroup()
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXPERIMENT_NICE)
        except OSError as exc:
            notes.append(f"could not raise the experiment's priority to nice {EXPERIMENT_NICE}: {_why(exc)} "
                         "(needs root, CAP_SYS_NICE or RLIMIT_NICE)")
    if level == "realtime":
        if plan is None:
            notes.append("realtime refused: on the only core a busy-looping experiment would starve the server")
        else:
            try:
                os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(RT_PRIORITY))
            except OSError as exc:
                notes.append(f"real-time scheduling (SCHED_RR) not permitted: {_why(exc)} "
                             "(needs root, CAP_SYS_NICE or RLIMIT_RTPRIO)")
    elif level == "high":
        try:  # threads the experiment starts later (devices, plugins) must not inherit its nice
            os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        except OSError:
            pass
    _requested.update(level=level, notes=notes)
    return report()


AUTOGROUP = "/proc/self/autogroup"


def _raise_autogroup() -> list[str]:
    """With ``sched_autogroup`` (most desktop kernels) a thread's nice counts only inside its session.

    Each terminal session (``setsid``) is one group that the scheduler treats
    as one task: a nice -10 experiment would still share the CPU equally with
    a compile in another terminal. Raising the group's own nice gives the
    session (server, worker, display) precedence over other sessions' work.
    """
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as handle:
            if handle.read().strip() != "1":
                return []
        before = autogroup_nice()
        with open(AUTOGROUP, "w") as handle:
            handle.write(str(EXPERIMENT_NICE))
        if before is not None and not _autogroup_before:
            _autogroup_before.append(before)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"could not raise the session's scheduling group to nice {EXPERIMENT_NICE}: {_why(exc)}"]
    return []


_autogroup_before: list[int] = []  # the session group's nice before we raised it


def restore_session_group() -> None:
    """Give the session's scheduling group back its nice (the group outlives us: the user's terminal)."""
    if _autogroup_before:
        try:
            with open(AUTOGROUP, "w") as handle:
                handle.write(str(_autogroup_before.pop()))
        except OSError:
            pass


def autogroup_nice() -> int | None:
    """This process's autogroup nice value (Linux), None where there is none."""
    try:
        with open(AUTOGROUP) as handle:
            return int(handle.read().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def lower_helper_thread(plan: CorePlan | None, level: str | None = None) -> None:
    """For the worker's control threads (call on the thread itself): off the experiment's core, above the server."""
    level = level or _requested["level"]
    if level == "normal":
        return
    try:  # realtime: below the experiment, above everything else, on the other cores only
        if level == "realtime" and plan is not None:
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(HELPER_RT_PRIORITY))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # never inherit real time
    except OSError:
        pass
    if plan is not None:
        try:
            os.sched_setaffinity(0, plan.others)
        except OSError:
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HELPER_NICE)
    except OSError:
        pass  # not permitted: nice 0, like the server; reported through the experiment's own notes


def keep_off_experiment_core(plan: CorePlan | None, pid: int | None = None) -> list[str]:
    """Move every thread of process ``pid`` (default: this one) to the other cores; returns problems met.

    Threads they start later inherit the mask. A no-op without a plan (one core).
    """
    if plan is None:
        return []
    pid = pid or os.getpid()
    problems = []
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, plan.others)
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except OSError as exc:
            problems.append(f"could not move thread {tid} of process {pid} off core {plan.experiment}: {_why(exc)}")
    return problems


def raise_display_server(pid: int, plan: CorePlan | None, level: str) -> list[str]:
    """The X server we started (Xvfb): off the experiment's core, and as urgent as the experiment.

    Each flip waits for the display server to take the frame (a round trip
    under Xvfb), so a display server queued behind the server process makes
    the experiment's frame late even on a core of its own.
    """
    if level == "normal":
        return []
    problems = keep_off_experiment_core(plan, pid)
    if os.getsid(pid) == pid:  # a session (scheduling group) of its own: raise the group, not ours
        try:
            with open(f"/proc/{pid}/autogroup", "w") as handle:
                handle.write(str(EXPERIMENT_NICE))
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"could not raise the display server's scheduling group: {_why(exc)}")
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, EXPERIMENT_NICE)
            if level == "realtime" and plan is not None:
                os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(HELPER_RT_PRIORITY))
        except ProcessLookupError:
            continue
        except OSError as exc:
            problems.append(f"could not raise the display server's priority (pid {pid}): {_why(exc)}")
            break
    return problems


_POLICY_NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_RR: "SCHED_RR", os.SCHED_FIFO: "SCHED_FIFO",
                 getattr(os, "SCHED_BATCH", -1): "SCHED_BATCH", getattr(os, "SCHED_IDLE", -2): "SCHED_IDLE"}


def report() -> dict[str, Any]:
    """What the calling thread has now (read back from the kernel), with what was asked and why it differs."""
    tid = threading.get_native_id()
    policy = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK
    rt = os.sched_getparam(0).sched_priority
    nice = os.getpriority(os.PRIO_PROCESS, tid)
    obtained = "realtime" if policy in (os.SCHED_RR, os.SCHED_FIFO) else "high" if nice < 0 else "normal"
    return {
        "requested": _requested["level"],
        "obtained": obtained,
        "policy": _POLICY_NAMES.get(policy, str(policy)),
        "rt_priority": rt,
        "nice": nice,
        "session_group_nice": autogroup_nice(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "machine_cpus": os.cpu_count(),
        "notes": list(_requested["notes"]),
    }
