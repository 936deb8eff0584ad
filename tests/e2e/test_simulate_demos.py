"""Dry runs of PsychoPy's own Builder demos that are answered with buttons and forms, under Xvfb.

The demos are copied unmodified from the installed PsychoPy
(``demos/builder``): the Big Five Inventory (two forms, each ended by a
"Continue" button anchored at its bottom-right corner) and the sliders demo
(sliders of every style, each routine ended by a "Done" button). Before the
simulated click aimed at a point the button contains, both sat on their
first routine until stopped.

The eye-tracking demo (ioHub, MouseGaze) waits on input read in ioHub's own
server process: SPACE on its calibration screens and gaze on a region of
interest in each trial; the simulated participant gives both through XTest
(:mod:`session.eyetracking`). PsychoPy 2026.2.5 cannot run that demo as
shipped: its settings name the eye tracker by its label "MouseGaze", which
the compiler writes as an ioHub device name ioHub does not know, so the
tracker is None. The test copies it with the setting as Builder now stores
it when MouseGaze is chosen (the backend key), and changes nothing else.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from session.session import Session
from session.pointer import point_at
from session.simulate import RESPONSES_FILE, Policy, Simulator

from conftest import read_csv, run_csv

BUILDER_DEMOS = Path(__import__("psychopy").__file__).parent / "demos" / "builder"
BFI = BUILDER_DEMOS / "Experiments" / "BigFiveInventory"
SLIDERS = BUILDER_DEMOS / "Feature Demos" / "sliders"
DRAG = BUILDER_DEMOS / "Experiments" / "dragAndDrop"
EYETRACKING = BUILDER_DEMOS / "Hardware" / "eyetracking"
BUTTON_BOX = BUILDER_DEMOS / "Feature Demos" / "buttonBox"
MOUSEGAZE_LABEL = 'val="MouseGaze" valType="str" updates="None" name="eyetracker"'
MOUSEGAZE_KEY = 'val="eyetracker.hw.mouse.EyeTracker" valType="str" updates="None" name="eyetracker"'
EYETRACKING_REPS = '<Param name="nReps" updates="None" val="5" valType="num"/>'
EYETRACKING_LAYOUT = '<Param name="targetLayout" updates="None" val="NINE_POINTS" valType="str"/>'
POLICY = {"seed": 3, "rt_mean": 0.2, "rt_sd": 0.05}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("demos")
    root = base / "root"
    for demo in (BFI, SLIDERS, DRAG):
        shutil.copytree(demo, root / demo.name, ignore=shutil.ignore_patterns("data", "__pycache__"))
    with Session(root, data_dir=base / "data", window={"size": [640, 480], "frame_rate": 60},
                 discover_experiments=False) as session:
        session.add_experiment("BigFiveInventory/BFI.psyexp", key="bfi")
        session.add_experiment("sliders/sliders.psyexp", key="sliders")
        session.add_experiment("dragAndDrop/drag_and_drop.psyexp", key="drag")
        shutil.copytree(EYETRACKING, root / "eyetracking", ignore=shutil.ignore_patterns("data", "__pycache__"))
        exp = root / "eyetracking" / "eyetracking.psyexp"
        text = exp.read_text(encoding="utf-8")
        assert text.count(MOUSEGAZE_LABEL) == 1
        text = text.replace(MOUSEGAZE_LABEL, MOUSEGAZE_KEY)  # as shipped it cannot run (see the README)
        # and shorter, for the suite's time: 2 repeats instead of 5, a 3-point calibration instead of 9
        for long, short in ((EYETRACKING_REPS, EYETRACKING_REPS.replace('"5"', '"2"')),
                            (EYETRACKING_LAYOUT, EYETRACKING_LAYOUT.replace("NINE", "THREE"))):
            assert text.count(long) == 1
            text = text.replace(long, short)
        exp.write_text(text, encoding="utf-8")
        session.add_experiment("eyetracking/eyetracking.psyexp", key="eyetracking")
        shutil.copytree(BUTTON_BOX, root / "buttonBox", ignore=shutil.ignore_patterns("data", "__pycache__"))
        session.add_experiment("buttonBox/buttonBoxDemo.psyexp", key="buttonbox")
        yield session


def run_bounded(session: Session, key: str, timeout: float = 90, **kwargs):
    """Run on this thread; a dry run stuck on a routine is stopped (and then fails the test)."""
    timer = threading.Timer(timeout, lambda: session.stop())
    timer.start()
    try:
        return session.run(key, **kwargs)
    finally:
        timer.cancel()


def responses(result) -> list[dict]:
    lines = (result.data_dir / RESPONSES_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_big_five_inventory_completes_unattended_with_every_item_answered(session):
    result = run_bounded(session, "bfi", exp_info={"participant": "sim"}, seed=1, simulate=POLICY)
    assert result.outcome == "completed", result.error
    rows = read_csv(run_csv(result.data_dir))
    # one row per item of each form, as its items file lists them, and every question answered
    from psychopy.data import importConditions

    for form, items_file in (("demog", "demographics.xlsx"), ("TIPIForm", "TIPI.xlsx")):
        items = importConditions(str(BFI / items_file))
        found = [row for row in rows if row.get(f"{form}.index", "") != ""]
        assert [row[f"{form}.itemText"] for row in found] == [str(item["itemText"]) for item in items]
        questions = [row for row in found if row[f"{form}.type"] not in ("heading", "description")]
        assert questions and all(row[f"{form}.response"] not in ("", "None") for row in questions), form
    tipi = [row for row in rows if row.get("TIPIForm.type") == "rating"]
    assert len(tipi) == 10 and all(1 <= int(row["TIPIForm.response"]) <= 7 for row in tipi)
    # each Continue button was clicked once, through its own isClicked, and that ended its routine
    clicks = {name: [row for row in rows if row.get(f"{name}.numClicks", "") != ""] for name in ("contBtn1", "contBtn2")}
    for name, found in clicks.items():
        assert len(found) == 1 and found[0][f"{name}.numClicks"] == "1", name
        assert json.loads(found[0][f"{name}.timesOn"])[0] > 0  # seconds after the button appeared
    given = responses(result)
    assert [r["component"] for r in given if r["kind"] == "button"] == ["contBtn1", "contBtn2"]
    # the button is the routine's last act: clicked after every item of its form was answered
    order = [r["component"].split(".")[0] for r in given]
    assert order.index("contBtn1") > max(i for i, c in enumerate(order) if c == "demog")
    assert order.index("contBtn2") > max(i for i, c in enumerate(order) if c == "TIPIForm")


def test_sliders_demo_rates_every_slider_before_pressing_done(session):
    result = run_bounded(session, "sliders", exp_info={"participant": "sim"}, seed=1, simulate=POLICY)
    assert result.outcome == "completed", result.error
    rows = read_csv(run_csv(result.data_dir))
    fruit = [row for row in rows if row.get("fruitName")]
    assert len(fruit) == 4
    for row in fruit:  # each trial: both ratings given before fruitDone ended it
        assert row["sourness.response"] not in ("", "None") and row["yumminess.response"] not in ("", "None")
        assert row["fruitDone.numClicks"] == "1"
    filled = {column: value for row in rows for column, value in row.items() if value not in ("", "None")}
    for slider in ("categ", "leftLabels", "rightLabels", "ori", "pos", "customSlider"):
        assert f"{slider}.response" in filled, slider
    for button in ("stylesDone", "dynoDone", "customDone"):
        assert filled.get(f"{button}.numClicks") == "1", button


def test_drag_and_drop_demo_drags_both_squares_onto_the_grid_then_accepts(session):
    result = run_bounded(session, "drag", exp_info={"participant": "sim"}, seed=1, simulate=POLICY)
    assert result.outcome == "completed", result.error
    rows = [row for row in read_csv(run_csv(result.data_dir)) if row.get("whiteSquarePos")]
    assert len(rows) == 10  # one per solution in stimuli/solutions.xlsx
    given = responses(result)
    drags = [r for r in given if r["kind"] == "drag"]
    assert len(drags) == 2 * len(rows)
    for trial, row in enumerate(rows):
        for square, start in (("whiteSquare", (-0.5, 0.1)), ("pinkSquare", (-0.5, -0.3))):
            pos = [float(v) for v in row[f"{square}.pos"].strip("[]").split()]
            # PsychoPy's doDragging moved it from where the trial put it onto the 0.6 x 0.6 grid in the middle
            assert pos != pytest.approx(start, abs=0.01)
            assert all(abs(v) <= 0.3 + 1e-6 for v in pos), (square, pos)
            logged = [r for r in drags if r["component"] == square and r["episode"] == trial]
            assert len(logged) == 1 and logged[0]["response"] == pytest.approx(pos, abs=1e-5)
        assert row["acceptBtn.numClicks"] == "1"
    # per trial: both drags, then Accept
    kinds = [r["kind"] for r in given]
    assert kinds == ["drag", "drag", "button"] * len(rows)


def test_eyetracking_demo_calibrates_and_looks_at_every_target_through_iohub(session):
    # the calibration screens wait for SPACE from ioHub's keyboard, each trial for 2.5 s of gaze in its ROI
    result = run_bounded(session, "eyetracking", timeout=150, exp_info={"participant": "sim"}, seed=1,
                         simulate=POLICY)
    assert result.outcome == "completed", result.error
    rows = read_csv(run_csv(result.data_dir))
    trials = [row for row in rows if row.get("trials.thisN", "") != ""]
    assert len(trials) == 2  # the loop's repeats (5 in the demo)
    given = responses(result)
    gazes = [r for r in given if r["kind"] == "gaze"]
    assert [r["component"] for r in gazes] == ["roi"] * 2
    for row, gaze in zip(trials, gazes):
        # one look per trial, held until the experiment's own 2.5 s criterion ended the trial
        assert row["roi.numLooks"] == "1"
        assert float(row["roi.dwellTime"]) >= 2.5
        # the look began once ioHub's MouseGaze sampled the moved pointer: after the drawn RT, soon after
        on = json.loads(row["roi.timesOn"])[0]
        assert gaze["rt"] <= on < gaze["rt"] + 0.5
    # the calibration was answered by SPACE through ioHub (it returns only after the last screen's SPACE)
    assert any(r["kind"] == "iohub_key" and r["response"] == "space" for r in given)
    assert [row["key_resp.keys"] for row in rows if row.get("key_resp.keys")] == ["space"]


def test_button_box_demo_presses_a_button_of_the_lab_s_box_then_ends_with_its_key(session):
    """The demo's box is whatever the lab set up under its name: here PsychoPy's keyboard-emulated one."""
    session.add_device("demoButtonBox", "psychopy.hardware.button.KeyboardButtonBox").result(timeout=30)
    try:
        # seed 2 draws the box's RT (0.200 s) before the ending key's (0.232 s): the press comes first
        result = run_bounded(session, "buttonbox", exp_info={"participant": "sim"}, seed=2, simulate=POLICY)
    finally:
        session.remove_device("demoButtonBox").result(timeout=30)
    assert result.outcome == "completed", result.error
    given = responses(result)
    (pressed,) = [r for r in given if r["kind"] == "button_box"]
    assert pressed["component"] == "buttonBox" and pressed["response"] in range(8)  # the box's 8 buttons
    (row,) = [row for row in read_csv(run_csv(result.data_dir)) if "buttonBox.buttons" in row]
    # the component read the press from its device, as Builder's code does with a real box's
    assert row["buttonBox.buttons"] == str(pressed["response"])
    assert [r["component"] for r in given if r["kind"] == "key"] == ["ender"]


@pytest.mark.parametrize("anchor", ["bottom-right", "top-left", "center"])
def test_the_pointer_lands_inside_a_button_whatever_its_anchor(session, anchor, tmp_path):
    # a Builder button's pos is its anchor point: for bottom-right, its corner, where contains() is False
    from psychopy import event, visual

    win = session.windows.ensure()
    button = visual.ButtonStim(win, text="Continue", pos=(0.95, -0.95), units="norm", letterHeight=0.04,
                               size=(0.15, 0.1), anchor=anchor)
    button.draw()
    assert point_at(button, button.listener)
    assert button.contains(button.listener)
    # and pyglet's press handler then makes the button's own isClicked true, as a real click does
    simulator = Simulator(Policy(), tmp_path, None, time.monotonic)
    simulator._press(button.listener, 0.0)
    try:
        assert button.isClicked
    finally:
        simulator._release_button()
    assert not button.isClicked
    event.clearEvents()
