"""Session plan files and their schedules, without a server."""

from __future__ import annotations

import itertools

import pytest

from liaison.plans.schedule import latin_square, unroll, williams
from liaison.protocol.plan_file import PlanError, parse_plan, plan_json_schema

BASE = """
name = "p"
participants = ["a", "b", "c", "d"]
[[experiments]]
key = "x"
[[experiments]]
key = "y"
[[experiments]]
key = "z"
"""


def runs(text: str) -> list[dict]:
    return [s for s in unroll(parse_plan(text)) if s["kind"] == "run"]


def orders(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for step in runs(text):
        out.setdefault(step["participant"], []).append(step["key"])
    return out


def test_latin_square_and_williams_designs():
    for n in range(1, 8):
        square = latin_square(n)
        assert all(sorted(row) == list(range(n)) for row in square)
        assert all(sorted(col) == list(range(n)) for col in zip(*square))  # every position once
        rows = williams(n)
        assert len(rows) == (n if n % 2 == 0 else 2 * n)
        follows = {(a, b): 0 for a, b in itertools.permutations(range(n), 2)}
        for row in rows:
            for a, b in zip(row, row[1:]):
                follows[(a, b)] += 1
        assert len(set(follows.values())) <= 1, f"carry-over not balanced for n={n}"


def test_orders_per_method():
    assert orders(BASE) == {p: ["x", "y", "z"] for p in "abcd"}
    assert orders(BASE + '[counterbalance]\nmethod = "latin_square"\n') == {
        "a": ["x", "y", "z"], "b": ["y", "z", "x"], "c": ["z", "x", "y"], "d": ["x", "y", "z"]}
    random_plan = BASE + '[counterbalance]\nmethod = "random"\nseed = 4\n'
    first = orders(random_plan)
    assert first == orders(random_plan)  # seeded
    assert all(sorted(order) == ["x", "y", "z"] for order in first.values())
    assert orders(random_plan.replace('"d"]', '"d", "e"]'))["a"] == first["a"]  # independent of the count


def test_exp_info_seeds_cells_and_breaks():
    text = (BASE.replace('name = "p"', 'name = "p"\nseed = 10') + '[participant_info.b]\nage = 30\n'
            + '[between_participants]\nkind = "continue"\n[between_experiments]\nkind = "timed"\nseconds = 5\n')
    text = text.replace('key = "x"', 'key = "x"\nexp_info = { session = "s1", age = 1 }')
    steps = unroll(parse_plan(text))
    kinds = [s["kind"] for s in steps]
    assert kinds.count("run") == 12 and kinds.count("break") == 3 + 4 * 2
    assert [s["index"] for s in steps] == list(range(len(steps)))
    run_steps = [s for s in steps if s["kind"] == "run"]
    assert [s["seed"] for s in run_steps] == list(range(10, 22))
    b_x = next(s for s in run_steps if s["participant"] == "b" and s["key"] == "x")
    assert b_x["exp_info"] == {"session": "s1", "age": 30, "participant": "b"}
    assert b_x["cell"] == {"method": "none", "order": ["x", "y", "z"], "position": 0}


def test_participant_patterns():
    plan = parse_plan(BASE.replace('["a", "b", "c", "d"]', '{ pattern = "S{n:03d}", count = 3, start = 9 }'))
    assert plan.participant_ids() == ["S009", "S010", "S011"]


@pytest.mark.parametrize("change, words", [
    (("participants = [", "participants = [\"a\", "), "distinct"),
    (('key = "y"', 'key = "x"'), "once"),
    (("name = \"p\"", "name = \"p\"\ncolour = 1"), "colour"),
    (("\n[[experiments]]\nkey = \"z\"\n", "\n[[experiments]]\nkey = \"z\"\n[counterbalance]\nmethod = \"random\"\n"),
     "seed"),
    (("\n[[experiments]]\nkey = \"z\"\n", "\n[[experiments]]\nkey = \"z\"\n[between_experiments]\nkind = \"timed\"\n"),
     "seconds"),
    (('["a", "b", "c", "d"]', '{ pattern = "S{n}{n}", count = 2 }'), "pattern"),
    (('["a", "b", "c", "d"]', '{ pattern = "S{n.__class__}", count = 2 }'), "pattern"),
    (("\n[[experiments]]\nkey = \"z\"\n", "\n[[experiments]]\nkey = \"z\"\n[participant_info.zz]\nage = 1\n"), "zz"),
    (("\n[[experiments]]\nkey = \"z\"\n", "\n[[experiments]]\nkey = \"z\"\n[on_failure]\naction = \"explode\"\n"),
     "on_failure"),
    (("name = \"p\"", "name = "), "TOML"),
])
def test_bad_plans_get_errors_naming_the_problem(change, words):
    with pytest.raises(PlanError, match=words):
        parse_plan(BASE.replace(*change, 1))


def test_the_published_schema_is_the_model():
    schema = plan_json_schema()
    assert schema["title"] == "Liaison session plan"
    assert set(schema["required"]) == {"name", "participants", "experiments"}
