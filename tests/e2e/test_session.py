"""The in-process Session against real experiments in a real window."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import read_csv, run_csv
from session import Busy, Conflict, ExperimentError, NotFound, PathOutsideRoot, Session
from session.events import Publisher
from session.names import InvalidName


@pytest.fixture(scope="module")
def recorder():
    events = []
    publisher = Publisher()
    publisher.subscribe(events.append)
    return publisher, events


@pytest.fixture(scope="module")
def session(session_root, recorder, tmp_path_factory):
    publisher, _ = recorder
    data_dir = tmp_path_factory.mktemp("data")
    with Session(session_root, data_dir=data_dir, publisher=publisher,
                 params={"session": "042"}, window={"size": (640, 480), "frame_rate": 60}) as s:
        yield s


def events_of(events, run_id, kind=None):
    return [e for e in events if getattr(e, "run_id", None) == run_id and (kind is None or e.type == kind)]


def later(delay, fn):
    """Call ``fn`` from another thread after ``delay`` seconds; returns a dict with its outcome."""
    box = {}

    def target():
        time.sleep(delay)
        try:
            box["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_discovery_lists_experiments_without_importing_them(session):
    keys = {e["key"]: e for e in session.list_experiments()}
    assert {"frames_demo", "raises_demo", "hangs_demo"} <= set(keys)
    assert keys["frames_demo"]["kind"] == "py"
    assert keys["frames_demo"]["exp_info"]["n_trials"] == 5
    assert keys["frames_demo"]["exp_info"]["date"] == ""  # Builder's "|hid" flag is stripped
    # Listing must not have executed any experiment code.
    assert not any(name.startswith("liaison_experiment_") and getattr(mod, "expName", None) == "hangs_demo"
                   for name, mod in sys.modules.items())


def test_full_run_streams_every_row_incrementally_and_saves_csv(session, recorder):
    _, events = recorder
    result = session.run("frames_demo", {"participant": "full", "n_trials": 4, "frames_per_trial": 3})
    assert result.outcome == "completed", result.traceback
    chunks = events_of(events, result.run_id, "data_rows")
    assert len(chunks) >= 2, "rows should arrive in several increments, not one dump"
    streamed = []
    for chunk in chunks:
        assert chunk.first_row == len(streamed), "each chunk starts where the previous ended"
        streamed.extend(chunk.rows)
    rows = read_csv(run_csv(result.data_dir))
    assert len(rows) == len(streamed) == 4
    assert [r["trial_value"] for r in rows] == ["0", "10", "20", "30"]
    assert [r["trial_value"] for r in streamed] == [0, 10, 20, 30]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kinds = [e.type for e in events_of(events, result.run_id) if e.type != "status"]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert session.status == "idle"


def test_exp_info_defaults_session_params_and_overrides(session):
    result = session.run("frames_demo", {"participant": "p-override", "n_trials": 1, "frames_per_trial": 2})
    row = read_csv(run_csv(result.data_dir))[0]
    assert row["participant"] == "p-override"  # run override
    assert row["session"] == "042"  # session params beat the experiment default "001"
    assert row["expName"] == "frames_demo"
    assert result.exp_info["date"] and result.exp_info["date"] in run_csv(result.data_dir).name


def test_pause_resume_stop_from_another_thread_land_within_frames(session, recorder):
    _, events = recorder
    module = session.experiments["frames_demo"].module
    module.SEEN.clear()
    marks = {}

    def control():
        assert wait_until(lambda: session.status == "running")
        time.sleep(0.2)
        marks["pause_at"] = module.FRAME
        marks["pause_latency"] = session.pause().result(5)
        time.sleep(0.3)
        marks["frame_while_paused"] = module.FRAME
        time.sleep(0.3)
        marks["frame_after_wait"] = module.FRAME
        marks["status_paused"] = session.status
        session.resume().result(5)
        time.sleep(0.2)
        marks["stop_at"] = module.FRAME
        session.stop().result(5)

    box = later(0, control)
    result = session.run("frames_demo", {"participant": "ctl", "n_trials": 1000, "frames_per_trial": 10})
    box["thread"].join(10)
    assert "error" not in box, box.get("error")
    assert result.outcome == "stopped"
    seen = dict((what, frame) for frame, what in module.SEEN)
    assert seen["paused"] - marks["pause_at"] <= 2, (seen, marks)
    assert seen["finished"] - marks["stop_at"] <= 2, (seen, marks)
    assert marks["frame_after_wait"] == marks["frame_while_paused"], "no frames may run while paused"
    assert marks["status_paused"] == "paused"
    kinds = [e.type for e in events_of(events, result.run_id)]
    for kind in ("run_paused", "run_resumed", "run_stopping", "run_finished"):
        assert kind in kinds
    rows = read_csv(run_csv(result.data_dir))
    assert len(rows) >= 1 and rows[0]["participant"] == "ctl"


def test_stop_while_paused_ends_the_run_and_saves(session):
    def control():
        assert wait_until(lambda: session.status == "running")
        time.sleep(0.2)
        session.pause().result(5)
        session.stop().result(5)

    box = later(0, control)
    result = session.run("frames_demo", {"participant": "pstop", "n_trials": 1000, "frames_per_trial": 5})
    box["thread"].join(10)
    assert result.outcome == "stopped"
    assert run_csv(result.data_dir).is_file()


def test_add_data_and_annotate_land_in_the_saved_csv(session, recorder):
    _, events = recorder

    def control():
        assert wait_until(lambda: session.status == "running")
        time.sleep(0.1)
        session.pause().result(5)  # hold the trial so both notes land on the same row
        session.add_data("operator_note", "lights dimmed").result(5)
        session.annotate("participant sneezed").result(5)
        session.annotate("second note, same trial").result(5)
        session.update_exp_info({"condition": "B"}).result(5)
        session.resume().result(5)
        time.sleep(0.1)
        session.stop().result(5)

    box = later(0, control)
    result = session.run("frames_demo", {"participant": "ann", "n_trials": 1000, "frames_per_trial": 10})
    box["thread"].join(10)
    assert "error" not in box, box.get("error")
    rows = read_csv(run_csv(result.data_dir))
    assert any(r.get("operator_note") == "lights dimmed" for r in rows)
    notes = [r.get("notes") for r in rows if r.get("notes")]
    assert any("participant sneezed" in n and "second note, same trial" in n for n in notes), notes
    assert any(r.get("condition") == "B" for r in rows)
    kinds = [e.type for e in events_of(events, result.run_id)]
    assert "data_added" in kinds and "annotation" in kinds and "exp_info_changed" in kinds


def test_the_row_a_stop_interrupts_keeps_loop_and_exp_info_columns(session):
    """PsychoPy saves the unfinished row without expInfo; ours carries it like the rest."""

    def control():
        assert wait_until(lambda: session.status == "running")
        session.pause().result(5)  # park mid-trial, then act on that same row
        session.update_exp_info({"block": "late"}).result(5)
        session.add_data("operator", "stopped here").result(5)
        session.stop().result(5)

    box = later(0, control)
    result = session.run("frames_demo", {"participant": "orphan", "n_trials": 1000, "frames_per_trial": 50})
    box["thread"].join(10)
    assert "error" not in box, box.get("error")
    rows = read_csv(run_csv(result.data_dir))
    last = rows[-1]
    assert last["operator"] == "stopped here" and not last.get("frames"), "the interrupted row"
    assert last["participant"] == "orphan" and last["block"] == "late"
    assert last["i"] != "", "the loop's trial columns are filled in"


def test_trial_navigation(session):
    """Pause first so the trial under test cannot move on while we look at it."""
    marks = {}

    def control():
        assert wait_until(lambda: session.status == "running")
        session.pause().result(5)
        marks["current"] = session.current_trial().result(5)
        marks["future"] = session.future_trials(2).result(5)
        session.skip_trials(3).result(5)
        session.resume().result(5)

    box = later(0, control)
    result = session.run("frames_demo", {"participant": "nav", "n_trials": 12, "frames_per_trial": 15})
    box["thread"].join(10)
    assert "error" not in box, box.get("error")
    now = marks["current"]["data"]["i"]
    assert now <= 8, "paused early in a 12-trial run"
    assert [t["data"]["i"] for t in marks["future"]] == [now + 1, now + 2]
    rows = read_csv(run_csv(result.data_dir))
    skipped = {r["i"] for r in rows if r.get("skipped") == "True"}
    assert {str(now + 1), str(now + 2)} <= skipped, "PsychoPy marks the trials it skipped"
    assert not [r for r in rows if r["i"] in (str(now + 1), str(now + 2)) and r.get("frames")], \
        "skipped trials never ran"
    assert [r["i"] for r in rows if r.get("frames")][-1] == "11", "the run carried on to the end"


def test_failing_experiment_reports_and_session_keeps_working(session, recorder):
    _, events = recorder
    result = session.run("raises_demo")
    assert result.outcome == "failed"
    failed = events_of(events, result.run_id, "run_failed")
    assert len(failed) == 1
    assert failed[0].key == "raises_demo"
    assert "deliberate failure in raises_demo" in failed[0].traceback
    assert str(session.root) not in failed[0].traceback, "no absolute server paths reach clients"
    assert 'File "fixtures/raises_demo.py"' in failed[0].traceback, "the experiment's file, root-relative"
    assert "RuntimeError" in failed[0].error
    assert run_csv(result.data_dir).is_file(), "data up to the failure are saved"
    again = session.run("frames_demo", {"participant": "after", "n_trials": 1, "frames_per_trial": 1})
    assert again.outcome == "completed"


def test_gc_is_quiet_during_runs_and_restored_after(session):
    thresholds = gc.get_threshold()
    result = session.run("frames_demo", {"participant": "gc", "n_trials": 2, "frames_per_trial": 2})
    assert result.outcome == "completed"
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0


def test_gc_guard_keeps_older_generations_to_trial_boundaries(monkeypatch):
    from session import gcguard
    from session.gcguard import MAX_DEFERRED, GcGuard

    seen = []

    def record(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    def make_cycles(n):
        for _ in range(n):
            a = []
            a.append(a)

    kept = []
    gc.callbacks.append(record)
    try:
        with GcGuard() as guard:
            seen.clear()
            make_cycles(50_000)  # ~70 young collections' worth of cyclic garbage "during frames"
            kept += [[i] for i in range(20_000)]  # rows a run keeps: they survive into the middle generation
            during_frames = list(seen)
            seen.clear()
            frozen_before = gc.get_freeze_count()
            guard.at_trial_boundary()
            at_boundary = list(seen)
            frozen_at_boundary = gc.get_freeze_count() - frozen_before
            seen.clear()
            make_cycles(700 * 2 * MAX_DEFERRED)
            guard.at_frame()  # a script with no trial boundaries: the safety valve
            overdue = list(seen)
            seen.clear()
            monkeypatch.setattr(gcguard, "FREEZE_BUDGET", 0)  # the run froze all it may
            make_cycles(50_000)
            seen.clear()
            guard.at_trial_boundary()
            over_budget = list(seen)
    finally:
        gc.callbacks.remove(record)
    assert during_frames and set(during_frames) == {0}, "only young collections interrupt frames"
    assert at_boundary == [0], "at the boundary the young generation is collected and its survivors frozen"
    assert frozen_at_boundary >= 20_000 and guard.frozen >= 20_000
    assert overdue and set(overdue) == {0}, "the safety valve freezes too: no middle collection in a frame"
    assert over_budget == [1], "past the freeze budget the middle generation is collected"
    assert 0 < guard.max_pause and 0 < guard.max_boundary_pause
    assert gc.get_freeze_count() == 0, "everything frozen is collectable again after the run"
    assert guard.describe()["frozen"] == guard.frozen


def test_bad_requests_get_clear_errors(session, session_root):
    with pytest.raises(NotFound, match="no experiment with key 'nope'"):
        session.run("nope")
    with pytest.raises(PathOutsideRoot):
        session.add_experiment("../../etc/passwd")
    with pytest.raises(NotFound):
        session.add_experiment("missing.psyexp")
    (session_root / "notes.py").write_text("print('not an experiment')\n")
    with pytest.raises(ExperimentError, match="not a Builder-style script"):
        session.add_experiment("notes.py")
    shadow = session_root / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / "random.py").write_text((session_root / "fixtures" / "raises_demo.py").read_text())
    # imported under a private name: a file named like a stdlib module neither shadows nor is refused
    assert session.add_experiment("shadow/random.py", key="shadowy")["key"] == "shadowy"
    import random

    assert hasattr(random, "shuffle") and sys.modules["random"] is random
    with pytest.raises(InvalidName, match="invalid experiment key"):
        session.add_experiment("shadow/random.py", key="../escape")
    with pytest.raises(Conflict, match="no experiment is running"):
        session.pause()
    with pytest.raises(Conflict):
        session.add_data("x", 1)


def test_second_run_while_busy_is_refused(session):
    ticket = session.prepare_run("frames_demo", {"n_trials": 1, "frames_per_trial": 1})
    try:
        with pytest.raises(Busy, match=ticket.run_id):
            session.prepare_run("frames_demo")
    finally:
        result = session.execute(ticket)
    assert result.outcome == "completed"


def test_add_experiment_registers_and_runs(session, session_root):
    (session_root / "extra").mkdir(exist_ok=True)
    source = (session_root / "fixtures" / "frames_demo.py").read_text()
    (session_root / "extra" / "copied_demo.py").write_text(source)
    info = session.add_experiment("extra/copied_demo.py", key="copy")
    assert info["key"] == "copy" and info["exp_info"]["n_trials"] == 5
    result = session.run("copy", {"n_trials": 1, "frames_per_trial": 1})
    assert result.outcome == "completed"


def test_window_is_reused_and_recreated_only_when_needed(session):
    win = session.windows.win
    session.setup_window({"color": "black"})
    assert session.windows.win is win
    session.setup_window({"size": [320, 240]})
    assert session.windows.win is not win
    assert list(session.windows.win.size) == [320, 240]
    with pytest.raises(ValueError, match="unknown window parameter"):
        session.setup_window({"colour": "red"})


@pytest.mark.parametrize("key, trials", [("stroop_lite", 8), ("rt_demo", 10)])
def test_examples_run_end_to_end_in_process(session, recorder, key, trials):
    _, events = recorder
    result = session.run(key, {"participant": f"inproc-{key}"})
    assert result.outcome == "completed", result.traceback
    rows = read_csv(run_csv(result.data_dir))
    assert sum(1 for r in rows if r.get("trials.thisN", "") != "") == trials
    streamed = [row for e in events_of(events, result.run_id, "data_rows") for row in e.rows]
    assert len(streamed) == len(rows) == result.rows
    assert {r["participant"] for r in rows if r.get("participant")} == {f"inproc-{key}"}
    # the compiled .psyexp lives in the data dir's cache, never next to the user's file
    assert not (session.root / key / f"{key}.py").exists() or key == "rt_demo"


def test_manifest_records_how_the_run_came_to_be(session, session_root, tmp_path):
    import hashlib
    import json
    import platform
    import socket as socket_module

    import psychopy

    before = time.time()
    result = session.run("frames_demo", {"participant": "prov", "n_trials": 2, "frames_per_trial": 2}, seed=1234)
    folder = Path(result.data_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    experiment_file = session_root / "fixtures" / "frames_demo.py"
    assert manifest["run_id"] == result.run_id and folder.name == result.run_id
    assert manifest["experiment"]["key"] == "frames_demo"
    assert manifest["experiment"]["file"] == "fixtures/frames_demo.py"
    assert manifest["experiment"]["sha256"]["frames_demo.py"] == hashlib.sha256(experiment_file.read_bytes()).hexdigest()
    assert manifest["experiment"]["git"] is None, "the test root is no git work tree"
    assert manifest["exp_info"]["participant"] == "prov" and manifest["exp_info"]["session"] == "042"
    assert manifest["exp_info"]["date"] == result.exp_info["date"]
    assert manifest["seeds"] == {"seed": 1234, "random": 1234, "numpy": 1234}
    env = manifest["environment"]
    assert env["packages"]["psychopy"] == psychopy.__version__
    assert env["python"] == platform.python_version() and env["host"] == socket_module.gethostname()
    assert env["os"] == platform.platform()
    assert before <= manifest["started"] <= manifest["ended"] <= time.time()
    assert manifest["outcome"] == "completed" and manifest["status"] == "FINISHED" and manifest["rows"] == 2
    assert (folder / "STATUS").read_text() == "FINISHED\n"
    assert any(name.endswith(".csv") for name in manifest["data_files"])


def test_manifest_names_the_git_commit_of_the_experiments(session, session_root):
    import json
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(session_root), *args], check=True, capture_output=True,
                              text=True, env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                              "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout

    git("init", "-q")
    git("add", "fixtures")
    git("commit", "-qm", "experiments")
    try:
        commit = git("rev-parse", "HEAD").strip()
        result = session.run("frames_demo", {"participant": "git", "n_trials": 1, "frames_per_trial": 1})
        manifest = json.loads((Path(result.data_dir) / "manifest.json").read_text())
        assert manifest["experiment"]["git"] == {"commit": commit, "dirty": False}
        (session_root / "fixtures" / "notes.txt").write_text("changed after the commit")
        result = session.run("frames_demo", {"participant": "git", "n_trials": 1, "frames_per_trial": 1})
        manifest = json.loads((Path(result.data_dir) / "manifest.json").read_text())
        assert manifest["experiment"]["git"] == {"commit": commit, "dirty": True}
    finally:
        import shutil

        shutil.rmtree(session_root / ".git")
        (session_root / "fixtures" / "notes.txt").unlink(missing_ok=True)


def test_finished_runs_let_go_of_their_data(session):
    """A worker runs session after session: no run's ExperimentHandler (and rows) may stay behind."""
    import weakref

    from session import control

    handlers = []
    original = control.adopt

    def spy(this_exp, *args, **kwargs):
        handlers.append(weakref.ref(this_exp))
        return original(this_exp, *args, **kwargs)

    control.adopt = spy
    try:
        for _ in range(3):
            session.run("frames_demo", {"participant": "leak", "n_trials": 50, "frames_per_trial": 1})
    finally:
        control.adopt = original
    gc.collect()
    assert len(handlers) == 3
    assert [ref() is None for ref in handlers] == [True, True, True], "finished handlers were freed"
