"""The simulated participant's decisions, without a window: policy checks, distributions, key choice."""

from __future__ import annotations

import math
import statistics

import pytest

from session.simulate import Decision, Policy, PolicyError, _choose_key, draw


def test_policy_defaults_and_checks():
    assert Policy.from_dict({}) == Policy()
    assert Policy.from_dict(None).with_seed(5).seed == 5
    assert Policy.from_dict({"seed": 3}).with_seed(5).seed == 3  # an explicit seed wins over the run's
    for bad in ({"p_correct": -0.1}, {"p_miss": 2}, {"rt": "normal"}, {"rt_mean": 0}, {"rt_sd": -1},
                {"hold": float("nan")}, {"seed": -1}, {"typo": 1}):
        with pytest.raises(PolicyError):
            Policy.from_dict(bad)


def test_lognormal_rts_have_the_asked_mean_and_sd():
    policy = Policy(seed=1, rt_mean=0.5, rt_sd=0.15)
    rts = [draw(policy, "resp", i).rt for i in range(4000)]
    assert abs(statistics.fmean(rts) - 0.5) < 4 * 0.15 / math.sqrt(len(rts))
    assert abs(statistics.stdev(rts) - 0.15) < 0.015
    assert min(rts) > 0
    assert {draw(Policy(rt="fixed", rt_mean=0.3), "k", i).rt for i in range(10)} == {0.3}


def test_correct_and_miss_rates_and_independent_reproducible_streams():
    policy = Policy(seed=9, p_correct=0.7, p_miss=0.2)
    decisions = [draw(policy, "resp", i) for i in range(5000)]
    assert abs(sum(d.correct for d in decisions) / 5000 - 0.7) < 4 * math.sqrt(0.21 / 5000)
    assert abs(sum(not d.respond for d in decisions) / 5000 - 0.2) < 4 * math.sqrt(0.16 / 5000)
    assert draw(policy, "resp", 17) == draw(policy, "resp", 17)
    assert draw(policy, "resp", 17) != draw(policy, "other", 17)
    assert draw(policy, "resp", 17) != draw(Policy(seed=10, p_correct=0.7, p_miss=0.2), "resp", 17)


def decision(correct=True, respond=True, choice=0.0):
    return Decision(respond=respond, rt=0.3, correct=correct, choice_index=choice)


def test_keys_come_from_what_the_component_accepts():
    assert _choose_key(["left", "right"], None, "left", decision()) == "left"
    assert _choose_key(["left", "right"], None, "left", decision(correct=False)) == "right"
    assert _choose_key(["a", "b", "c"], None, None, decision(choice=0.99)) == "c"
    assert _choose_key(None, None, None, decision()) == "space"  # any key: space
    assert _choose_key(["left", "escape"], ["left"], None, decision()) is None  # nothing left to press
    assert _choose_key(["escape"], None, None, decision()) is None  # never quits the experiment
    assert _choose_key(["left"], None, "left", decision(respond=False)) is None  # a miss
    # go/no-go: correctAns None means withholding is correct
    assert _choose_key(["space"], None, "None", decision(correct=True)) is None
    assert _choose_key(["space"], None, "None", decision(correct=False)) == "space"
    # a correct answer the component does not accept cannot be given: any accepted key
    assert _choose_key(["y", "n"], None, "left", decision(choice=0.0)) == "y"
