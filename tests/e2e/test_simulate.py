"""Dry runs: a simulated participant answers real Builder experiments under Xvfb.

The experiments are unmodified Builder files (tests/experiments/keys_task,
mouse_slider; examples/stroop_lite); the responses go through PsychoPy's own
input paths, and what the experiment saved is checked against the policy.
"""

from __future__ import annotations

import json
import math
import threading

import pytest

from session.session import Session
from session.simulate import MARKER_FILE, RESPONSES_FILE, PolicyError

from conftest import make_root, read_csv, run_csv

N_TRIALS = 40  # keys_task: 2 conditions x 20 repetitions


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("simulate")
    with Session(make_root(base), data_dir=base / "data",
                 window={"size": [320, 240], "frame_rate": 60}) as session:
        yield session


def run_bounded(session: Session, key: str, timeout: float = 120, **kwargs):
    """Run on this thread; a stuck dry run is stopped (and then fails the test), never hangs it."""
    timer = threading.Timer(timeout, lambda: session.stop())
    timer.start()
    try:
        return session.run(key, **kwargs)
    finally:
        timer.cancel()


def trial_rows(result, column: str) -> list[dict[str, str]]:
    return [row for row in read_csv(run_csv(result.data_dir)) if row.get(column) not in (None, "")]


def responses(result) -> list[dict]:
    lines = (result.data_dir / RESPONSES_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def binomial_bound(p: float, n: int, z: float = 4.0) -> float:
    """Half-width of a z-sigma interval for a proportion: a correct simulator fails this ~1 in 16,000 runs."""
    return z * math.sqrt(p * (1 - p) / n)


def test_keyboard_experiment_completes_with_the_policy_accuracy_and_rts(session):
    policy = {"p_correct": 0.7, "rt_mean": 0.12, "rt_sd": 0.03, "seed": 11}
    result = run_bounded(session, "keys_task", exp_info={"participant": "sim"}, seed=5, simulate=policy)
    assert result.outcome == "completed", result.error
    rows = trial_rows(result, "corrAns")
    assert len(rows) == N_TRIALS
    assert all(row["resp.keys"] in ("left", "right") for row in rows), "every trial answered with an allowed key"
    accuracy = sum(int(row["resp.corr"]) for row in rows) / len(rows)
    assert abs(accuracy - 0.7) <= binomial_bound(0.7, len(rows))
    # the experiment's own RT column is the drawn RT: mean and sd of the log-normal, within sampling error
    rts = [float(row["resp.rt"]) for row in rows]
    mean = sum(rts) / len(rts)
    sd = math.sqrt(sum((rt - mean) ** 2 for rt in rts) / (len(rts) - 1))
    assert abs(mean - 0.12) <= 4 * 0.03 / math.sqrt(len(rts))
    assert 0.015 < sd < 0.05
    logged = [r for r in responses(result) if r["component"] == "resp"]
    assert [r["rt"] for r in logged] == pytest.approx(rts, abs=1e-9)
    # the instructions wait for event.getKeys(['space']) in a code component: answered too
    assert any(r["kind"] == "event_key" and r["response"] == "space" for r in responses(result))


def test_same_seed_gives_identical_responses(session):
    policy = {"p_correct": 0.6, "rt_mean": 0.08, "rt_sd": 0.02}
    first, second = (run_bounded(session, "keys_task", seed=123, simulate=policy) for _ in range(2))
    other = run_bounded(session, "keys_task", seed=124, simulate=policy)
    assert first.outcome == second.outcome == other.outcome == "completed"

    # Builder's TrialHandler2 draws its random order from a fresh numpy Generator, which the run seed
    # does not reach: compare what the participant did per trial (right or wrong, and when), which is
    # what the simulation seed decides.
    def answers(result):
        return [(row["resp.corr"], row["resp.rt"]) for row in trial_rows(result, "corrAns")]

    def decisions(result):
        return [(r["component"], r["episode"], r["correct"], r["rt"]) for r in responses(result)]

    assert len(answers(first)) == N_TRIALS
    assert answers(first) == answers(second)
    assert decisions(first) == decisions(second)
    assert answers(first) != answers(other)


def test_mouse_and_slider_experiment_completes(session):
    result = run_bounded(session, "mouse_slider", seed=9,
                         simulate={"p_correct": 1.0, "rt": "fixed", "rt_mean": 0.1})
    assert result.outcome == "completed", result.error
    rows = trial_rows(result, "target")
    assert len(rows) == 8
    for row in rows:
        assert row["mouse.clicked_name"] == f"['{row['target']}']"  # p_correct 1: always the target box
        assert row["mouse.corr"] == "[1]"
        assert 1 <= float(row["rating.response"]) <= 5 and float(row["rating.response"]).is_integer()
        assert float(row["rating.rt"]) == pytest.approx(0.1)
        assert 0.1 <= float(row["mouse.time"].strip("[]")) < 0.1 + 0.2  # read at the first poll after 100 ms


def test_the_bundled_stroop_answers_every_trial_with_the_default_policy(session):
    """`liaison run ... stroop_lite --simulate` as the README shows it: a participant, not a string of misses
    (its response window was 0.3 s, shorter than the default policy's RTs, 0.45 s on average)."""
    result = run_bounded(session, "stroop_lite", seed=5, simulate={})
    assert result.outcome == "completed", result.error
    rows = trial_rows(result, "corrAns")
    given = responses(result)
    assert len(rows) == 8 and all(row["key_resp.keys"] in ("left", "down", "right") for row in rows)
    assert [float(row["key_resp.rt"]) for row in rows] == pytest.approx([r["rt"] for r in given], abs=0.02)


def test_misses_leave_trials_unanswered(session):
    result = run_bounded(session, "stroop_lite", seed=4,
                         simulate={"p_miss": 1.0, "rt_mean": 0.1})  # stroop_lite's trials time out after 0.8 s
    assert result.outcome == "completed", result.error
    rows = trial_rows(result, "corrAns")
    assert rows and all(row["key_resp.keys"] == "None" for row in rows)


def test_a_dry_run_is_marked_simulated_everywhere(session):
    result = run_bounded(session, "stroop_lite", exp_info={"participant": "p01"}, seed=1,
                         simulate={"rt_mean": 0.1, "rt_sd": 0.02})
    assert result.outcome == "completed", result.error
    manifest = json.loads((result.data_dir / "manifest.json").read_text())
    assert manifest["simulated"] is True
    assert manifest["simulation"]["policy"]["seed"] == 1  # the run's seed, recorded
    assert (result.data_dir / MARKER_FILE).read_text().startswith("This run was played by")
    rows = read_csv(run_csv(result.data_dir))
    assert all(row["simulated"] == "True" for row in rows)
    assert rows[0]["piloting"] == "True"  # PsychoPy's own pilot-mode column
    assert result.exp_info["simulated"] is True
    # ...and a real run right after is not
    real = run_bounded(session, "rt_demo", exp_info={"n_trials": 2}, seed=1)
    manifest = json.loads((real.data_dir / "manifest.json").read_text())
    assert manifest["simulated"] is False and not (real.data_dir / MARKER_FILE).exists()
    assert "simulated" not in read_csv(run_csv(real.data_dir))[0]
    assert read_csv(run_csv(real.data_dir))[0].get("piloting") in (None, "", "False")


def test_bad_policies_are_refused_before_the_run(session):
    for bad in ({"p_correct": 1.5}, {"rt": "gamma"}, {"rt_mean": 0}, {"speed": 2}):
        with pytest.raises(PolicyError):
            session.prepare_run("keys_task", simulate=bad)
    assert session.status == "idle"


def test_a_run_opens_media_relative_to_its_own_folder(session):
    # Builder scripts chdir to their folder on import and open images, sounds and text relative to it;
    # the compiled module is imported once, so each run must be in its folder (BART's assets/ failed).
    result = run_bounded(session, "relative_media", seed=1)
    assert result.outcome == "completed", result.error
    assert read_csv(run_csv(result.data_dir))[0]["word"] == "hello"
