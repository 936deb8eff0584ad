"""The experiment thread's priority: obtained where permitted, reported (not raised) where not.

Each case runs in a forked child, so the test process keeps its own scheduling.
"""

from __future__ import annotations

import multiprocessing
import os
import resource

import pytest

from session import priority

NOBODY = 65534


def in_child(target, *args):
    """Run ``target(*args)`` in a forked child; return what it returned."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run():
        os.setsid()  # a scheduling group of its own: raising it must not touch the test session's
        try:
            child.send(("ok", target(*args)))
        except BaseException as exc:  # noqa: BLE001 - the test shows it
            child.send(("error", repr(exc)))

    process = ctx.Process(target=run)
    process.start()
    assert parent.poll(30), "the child did not answer"
    kind, value = parent.recv()
    process.join(10)
    assert kind == "ok", value
    return value


def unprivileged(level, plan):
    """As a user without CAP_SYS_NICE, with RLIMIT_RTPRIO and RLIMIT_NICE at 0."""
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
    if os.getuid() == 0:
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # drops every capability
    return priority.raise_experiment_thread(level, plan)


def can_realtime() -> bool:
    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            return True
        except OSError:
            return False
    return in_child(probe)


def test_the_core_plan_keeps_a_core_for_the_experiment():
    assert priority.plan_cores([0]) is None
    plan = priority.plan_cores([0, 1, 2, 3])
    assert plan.experiment == (3,) and plan.others == (0, 1, 2)
    assert priority.CorePlan.from_dict(plan.to_dict()) == plan


def test_an_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="normal, high, realtime"):
        priority.raise_experiment_thread("urgent", None)


def test_normal_changes_nothing():
    before = os.getpriority(os.PRIO_PROCESS, 0)
    report = in_child(priority.raise_experiment_thread, "normal", priority.plan_cores())
    assert report["requested"] == "normal" and report["notes"] == []
    assert report["nice"] == before and report["policy"] == "SCHED_OTHER"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="realtime needs two cores")
def test_realtime_where_permitted_gets_round_robin_and_a_core_of_its_own():
    if not can_realtime():
        pytest.skip("this machine does not permit SCHED_RR to this user (the fallback test covers it)")
    plan = priority.plan_cores()
    report = in_child(priority.raise_experiment_thread, "realtime", plan)
    assert report["obtained"] == "realtime" and report["policy"] == "SCHED_RR"
    assert report["rt_priority"] == priority.RT_PRIORITY and report["nice"] == priority.EXPERIMENT_NICE
    assert report["cpus"] == list(plan.experiment) and report["notes"] == []


def test_high_where_permitted_raises_nice_without_pinning():
    if os.getuid() != 0:
        pytest.skip("raising nice needs root or CAP_SYS_NICE")
    report = in_child(priority.raise_experiment_thread, "high", priority.plan_cores())
    assert report["obtained"] == "high" and report["nice"] == priority.EXPERIMENT_NICE
    assert report["cpus"] == sorted(os.sched_getaffinity(0))


def test_without_permission_it_degrades_and_says_why():
    report = in_child(unprivileged, "realtime", priority.plan_cores())
    assert report["requested"] == "realtime" and report["obtained"] == "normal"
    assert report["policy"] == "SCHED_OTHER" and report["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    notes = " ".join(report["notes"])
    assert "nice" in notes and ("SCHED_RR" in notes or "one core" in notes)


def test_realtime_on_one_core_is_refused():
    report = in_child(priority.raise_experiment_thread, "realtime", None)
    assert report["obtained"] != "realtime"
    assert any("realtime refused" in note for note in report["notes"])


def test_helper_threads_leave_the_experiments_core():
    plan = priority.plan_cores()
    if plan is None:
        pytest.skip("one core")

    def helper():
        priority.raise_experiment_thread("realtime", plan)
        priority.lower_helper_thread(plan, "realtime")
        return priority.report()

    report = in_child(helper)
    assert report["cpus"] == list(plan.others)
    if can_realtime():  # just below the experiment, on the other cores
        assert report["policy"] == "SCHED_RR" and report["rt_priority"] == priority.HELPER_RT_PRIORITY
    else:
        assert report["policy"] == "SCHED_OTHER"


def test_the_session_group_gets_its_nice_back():
    def raise_and_restore():
        before = priority.autogroup_nice()
        raised = priority.raise_experiment_thread("high", None)["session_group_nice"]
        priority.restore_session_group()
        return before, raised, priority.autogroup_nice()

    before, raised, after = in_child(raise_and_restore)
    if before is None:
        pytest.skip("no sched_autogroup on this kernel")
    if os.getuid() == 0:
        assert raised == priority.EXPERIMENT_NICE
    assert after == before
