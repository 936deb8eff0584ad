"""PsychoPy parity: exit codes, isolation, working directory, expInfo and trial shapes (real windows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import EXAMPLES, liaison_command, read_csv, run_csv
from session import Session
from session.events import Publisher
from session.problems import ExperimentProblems

DEMOS = Path(__import__("psychopy").__file__).parent / "demos" / "builder"

HEADER = '''
import os
from psychopy import data, visual
from psychopy.constants import STARTED

expName = "{name}"
expInfo = {{"participant": "p", "date|hid": ""}}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(name=expName, extraInfo=expInfo, savePickle=False,
                                  dataFileName=os.path.join(dataDir, "data", expName))
'''


def builder_script(name: str, body: str, extra: str = "") -> str:
    """A small Builder-style script: ``body`` is the inside of ``run``, ``extra`` more module code."""
    return (HEADER.format(name=name) + textwrap.dedent(extra) + "\n\ndef run(expInfo, thisExp, win, "
            "globalClock=None, thisSession=None):\n    thisExp.status = STARTED\n"
            + textwrap.indent(textwrap.dedent(body), "    ") + "\n")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def parity_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parity") / "root"
    record = "thisExp.addData('v', 1)\nthisExp.nextEntry()\n"
    write(root / "exits" / "exit_fatal.py", builder_script("exit_fatal", record + "import sys\n"
                                                           "sys.exit('fatal: the eye tracker is not calibrated')"))
    write(root / "exits" / "exit_two.py", builder_script("exit_two", record + "import sys\nsys.exit(2)"))
    write(root / "exits" / "exit_zero.py", builder_script("exit_zero", record + "import sys\nsys.exit(0)"))
    write(root / "exits" / "quits.py", builder_script("quits", record + "from psychopy import core\ncore.quit()"))
    for side in ("a", "b"):  # each folder ships its own helpers.py
        write(root / side / "helpers.py", f"WHICH = {side!r}\n")
        write(root / side / f"uses_{side}.py", builder_script(
            f"uses_{side}", "import helpers as lazily\nthisExp.addData('module_level', helpers.WHICH)\n"
            "thisExp.addData('imported_in_run', lazily.WHICH)\nthisExp.nextEntry()", extra="import helpers\n"))
    # named like Builder's camera component (psychopy/experiment/components/camera)
    write(root / "cam" / "camera.py", builder_script("camera", "thisExp.addData('ran', 'yes')\nthisExp.nextEntry()"))
    # loads a picture relative to its folder in setupWindow, like the BART demo's assets/background.jpg
    (root / "pictures" / "assets").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(root / "pictures" / "assets" / "x.png")
    write(root / "pictures" / "pictures.py", builder_script("pictures", '''
        stim = visual.ImageStim(win, image="assets/x.png")  # relative, as Builder writes it
        stim.draw()
        win.flip()
        thisExp.addData('cwd_run', os.getcwd())
        thisExp.addData('cwd_setup', SEEN["setupWindow"])
        thisExp.nextEntry()''', extra='''
        SEEN = {}


        def setupWindow(expInfo=None, win=None):
            SEEN["setupWindow"] = os.getcwd()
            SEEN["stim"] = visual.ImageStim(win, image="assets/x.png")  # fails unless cwd is this folder
            return win


        def saveData(thisExp):
            thisExp.addData('cwd_save', os.getcwd())
            thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")
        '''))
    write(root / "edits" / "edits.py", builder_script(
        "edits", "expInfo['insertedKey'] = 'insertedValue'\nthisExp.addData('v', 1)\nthisExp.nextEntry()"))
    write(root / "shape" / "trial_shape.py", builder_script("trial_shape", """
        trials = data.TrialHandler2(trialList=[{"i": 0}, {"i": 1}], nReps=1, method="sequential",
                                    name="trials", extraInfo=expInfo, originPath=-1, seed=None)
        thisExp.addLoop(trials)
        for trial in trials:
            seen = thisSession.getCurrentTrial()
            thisExp.addData("seen_keys", "|".join(sorted(seen)))
            thisExp.addData("seen_type", seen.get("type"))
            thisExp.nextEntry()
        """))
    demos = DEMOS
    shutil.copytree(demos / "Feature Demos" / "noise", root / "noise")  # components of a missing plugin
    shutil.copytree(demos / "Experiments" / "stroop", root / "nocond", ignore=shutil.ignore_patterns("*.csv"))
    shutil.copytree(demos / "Feature Demos" / "sliders", root / "sliders")  # gratings with tex "sin"
    write(root / "nodevice" / "nodevice.py", builder_script(
        "nodevice", record + "from psychopy.hardware.exceptions import DeviceNotConnectedError\n"
        "raise DeviceNotConnectedError('no camera is connected')"))
    write(root / "devsetup" / "devsetup.py", builder_script(
        "devsetup", "from psychopy.hardware.button import ButtonBox\n"
        "thisExp.addData('found', type(ButtonBox(device='fromExperiment').device).__name__)\nthisExp.nextEntry()",
        extra="""
        from psychopy.hardware import DeviceManager


        def setupDevices(expInfo, thisExp, win):
            if DeviceManager.getDevice("fromExperiment") is None:
                DeviceManager.addDevice(deviceClass="psychopy.hardware.button.KeyboardButtonBox",
                                        deviceName="fromExperiment", buttons=["x"])
            return True
        """))
    # copy of the example psyexp: something for PsychoPy's compiler to compile first
    stroop = EXAMPLES / "stroop_lite"
    write(root / "stroop_lite" / "stroop_lite.psyexp", (stroop / "stroop_lite.psyexp").read_text())
    write(root / "stroop_lite" / "conditions.csv", (stroop / "conditions.csv").read_text())
    return root


@pytest.fixture(scope="module")
def session(parity_root, tmp_path_factory):
    with Session(parity_root, data_dir=tmp_path_factory.mktemp("data"), publisher=Publisher(),
                 window={"size": (320, 240), "frame_rate": 60}) as s:
        yield s


@pytest.mark.parametrize("key, message", [
    ("exit_fatal", "fatal: the eye tracker is not calibrated"),
    ("exit_two", "exited with status 2"),
])
def test_error_exits_are_failures_with_their_message(session, key, message):
    result = session.run(key)
    assert result.outcome == "failed"
    assert message in result.error
    assert result.rows == 1, "the row before the exit is saved"


@pytest.mark.parametrize("key", ["exit_zero", "quits"])
def test_zero_exit_and_core_quit_end_the_run_normally(session, key):
    result = session.run(key)
    assert result.outcome == "completed", result.error
    assert result.error is None


def test_each_experiment_imports_its_own_helpers(session):
    path_before = list(sys.path)
    first = session.run("uses_a")
    second = session.run("uses_b")
    again = session.run("uses_a")
    for result, side in ((first, "a"), (second, "b"), (again, "a")):
        assert result.outcome == "completed", result.error
        row = read_csv(run_csv(result.data_dir))[0]
        assert (row["module_level"], row["imported_in_run"]) == (side, side)
    assert sys.path == path_before, "no experiment folder piles up on sys.path"
    assert "helpers" not in sys.modules, "nothing an experiment imported from its folder outlives the run"


def test_an_experiment_named_like_a_builder_component_runs_after_a_compile(session):
    path_before = list(sys.path)
    compiled = session.run("stroop_lite", {"participant": "compiler"})
    assert compiled.outcome in ("completed", "failed")  # it compiled; the compiler's sys.path change is what matters
    assert sys.path == path_before, "the compiler's components folder is not left on sys.path"
    result = session.run("camera")
    assert result.outcome == "completed", result.error
    assert read_csv(run_csv(result.data_dir))[0]["ran"] == "yes"


def test_every_stage_runs_in_the_experiment_folder(session, parity_root):
    cwd_before = os.getcwd()
    result = session.run("pictures")
    assert result.outcome == "completed", result.error
    row = read_csv(run_csv(result.data_dir))[0]
    folder = str((parity_root / "pictures").resolve())
    assert row["cwd_setup"] == folder and row["cwd_run"] == folder
    assert os.getcwd() == cwd_before, "the working directory is restored after the run"


def test_run_result_and_manifest_have_the_exp_info_the_run_ended_with(session):
    from session import records

    result = session.run("edits")
    assert result.exp_info["insertedKey"] == "insertedValue"
    assert records.read_manifest(result.data_dir)["exp_info"]["insertedKey"] == "insertedValue"


def test_trials_keep_psychopys_shape_type_included(session):
    result = session.run("trial_shape")
    assert result.outcome == "completed", result.error
    rows = read_csv(run_csv(result.data_dir))
    assert {"thisN", "thisIndex", "type"} <= set(rows[0]["seen_keys"].split("|"))
    assert rows[0]["seen_type"] not in ("", "None")


def test_a_missing_plugin_is_reported_before_the_run_and_the_run_refused(session):
    with pytest.raises(ExperimentProblems, match="psychopy-visionscience") as refused:
        session.run("noise")
    codes = {p["code"] for p in refused.value.details["problems"]}
    assert "plugin_missing" in codes
    listed = {e["key"]: e for e in session.list_experiments()}
    assert any(p["code"] == "plugin_missing" for p in listed["noise"]["problems"])
    assert session.status == "idle", "a refused run leaves the session free"
    assert session.run("edits").outcome == "completed"


def test_a_missing_conditions_file_and_the_keyboard_backend_are_reported(session):
    with pytest.raises(ExperimentProblems, match="trialTypes.csv"):
        session.run("stroop")
    problems = {p["code"]: p for e in session.list_experiments() if e["key"] == "stroop" for p in e["problems"]}
    assert problems["conditions_missing"]["severity"] == "error"
    # the stroop demo's keyboards are set to PsychToolbox, whose library (libjack) is missing here
    from session.problems import psychtoolbox_loads

    if not psychtoolbox_loads():
        assert problems["keyboard_backend"]["severity"] == "warning"


def test_liaison_check_reports_offline(parity_root):
    done = subprocess.run([*liaison_command(), "check", str(parity_root), "noise", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    import json

    report = json.loads(done.stdout[done.stdout.index("["):])
    assert [r["key"] for r in report] == ["noise"]
    assert any(p["code"] == "plugin_missing" for p in report[0]["problems"])
    fine = subprocess.run([*liaison_command(), "check", str(parity_root), "edits"],
                          capture_output=True, text=True, timeout=300)
    assert fine.returncode == 0 and "ok" in fine.stdout


def test_a_psychopy_device_error_fails_the_run_and_its_data_are_saved(session):
    """PsychoPy's device exceptions derive from BaseException, which `except Exception` lets through."""
    result = session.run("nodevice")
    assert result.outcome == "failed" and "no camera is connected" in result.error
    assert result.rows == 1 and run_csv(result.data_dir).is_file()
    assert session.status == "idle" and session.run("edits").outcome == "completed"


def test_builtin_textures_are_not_missing_files(session):
    """A grating's texture "sin" names no file: the sliders demo runs (it was refused as resource_missing)."""
    problems = session.readiness(session.experiment("sliders"), inspect_now=True)["problems"]
    assert not [p for p in problems if p["severity"] == "error"], problems


def test_setup_devices_from_an_experiment_once_makes_session_devices(session):
    added = session.setup_devices("devsetup").result(60)
    assert added == ["fromExperiment"]
    described = {d["name"]: d for d in session.list_devices()}
    assert described["fromExperiment"]["experiment"] == "devsetup" and described["fromExperiment"]["ready"]
    assert {"name": "fromExperiment", "experiment": "devsetup"} in session.devices.stored()  # re-made on restart
    result = session.run("devsetup")
    assert result.outcome == "completed", result.error
    assert read_csv(run_csv(result.data_dir))[0]["found"] == "KeyboardButtonBox"
    assert session.remove_device("fromExperiment").result(30) is True
