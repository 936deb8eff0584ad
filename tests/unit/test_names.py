"""Experiment keys are names, and file names made from keys or ids stay inside their folder."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from journal_fixtures import published
from session.events import DataRows, RunStarted
from session.experiments import discover, make_experiment, unique_keys
from liaison.store.journal import Journal
from session.names import InvalidName, check_key, contain_data_file, safe_file_name
from liaison.store.recovery import recover

SCRIPT = "def setupData(expInfo, dataDir=None):\n    pass\n\n\ndef run(expInfo, thisExp, win):\n    pass\n"


@pytest.mark.parametrize("key", ["../x", "a/b", "..", ".hidden", "", "a\\b", "a\0b", "x" * 101, "sp ace", "-opt"])
def test_bad_keys_are_refused_with_the_rule(key):
    with pytest.raises(InvalidName, match="letters, digits"):
        check_key(key)


@pytest.mark.parametrize("key", ["stroop", "Stroop_2", "a.b-c", "_x", "9"])
def test_good_keys_pass(key):
    assert check_key(key) == key


def test_add_experiment_refuses_a_path_key(tmp_path):
    (tmp_path / "e.py").write_text(SCRIPT)
    with pytest.raises(InvalidName):
        make_experiment(tmp_path, "e.py", "../escape")
    assert make_experiment(tmp_path, "e.py", None).key == "e"


def test_discovery_gives_every_experiment_a_valid_distinct_key(tmp_path):
    for folder in ("Experiments/stroop", "Experiments/stroopExtended", "Hardware/EGI netstation", "x/a b", "y/a_b"):
        (tmp_path / folder).mkdir(parents=True)
    for path in ("Experiments/stroop/stroop.py", "Experiments/stroopExtended/stroop.py",
                 "Hardware/EGI netstation/stroop.py", "x/a b/task.py", "y/a_b/task.py", "solo.py"):
        (tmp_path / path).write_text(SCRIPT)
    keys = {e.path.relative_to(tmp_path).as_posix(): e.key for e in discover(tmp_path)}
    assert keys["solo.py"] == "solo"
    assert keys["Experiments/stroop/stroop.py"] == "stroop-stroop"
    assert keys["Hardware/EGI netstation/stroop.py"] == "EGI_netstation-stroop"
    assert len(set(keys.values())) == len(keys)
    assert all(check_key(k) for k in keys.values())


def test_unique_keys_number_what_sanitising_merges():
    keys = unique_keys([Path("a b.py"), Path("a_b.py")])
    assert keys[0] != keys[1] and all(check_key(k) for k in keys)


def test_safe_file_name_is_one_harmless_component():
    for text in ("../../etc/passwd", "..", "/abs", "a/b", "-rf", ".x", ""):
        name = safe_file_name(text)
        assert name and "/" not in name and not name.startswith((".", "-"))


def test_a_participant_id_cannot_move_the_data_file_outside_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    handler = types.SimpleNamespace(dataFileName=str(run_dir / "data" / "../../../../evil_exp"))
    assert contain_data_file(handler, run_dir) is not None
    assert run_dir.resolve() in Path(handler.dataFileName).resolve().parents
    inside = types.SimpleNamespace(dataFileName=str(run_dir / "data" / "p1_exp"))
    assert contain_data_file(inside, run_dir) is None and inside.dataFileName == str(run_dir / "data" / "p1_exp")


@pytest.mark.parametrize("key", ["folder/exp", "../../outside"])
def test_recovery_writes_inside_the_run_folder_whatever_key_the_journal_holds(tmp_path, key):
    journal = Journal.in_dir(tmp_path / "data")
    run_dir = tmp_path / "data" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    published(journal, [RunStarted(run_id="r1", key=key, exp_info={}, data_dir=str(run_dir)),
                        DataRows(run_id="r1", key=key, first_row=0, rows=[{"i": 0}])])
    report = recover(journal, lambda event: published(journal, [event]), wait=0)
    journal.close()
    csv = run_dir / report.runs[0]["csv"]
    assert csv.is_file() and csv.parent == run_dir
    assert not list(tmp_path.glob("*_recovered.csv")) and not (tmp_path / "outside_recovered.csv").exists()
