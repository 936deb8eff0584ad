"""Parity through a real ``liaison serve``: --clock, problems over the wire, get_run's expInfo, devices."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from conftest import read_csv, run_csv, start_serve, stop_serve
from liaison.client import Client, LiaisonError
from test_parity import DEMOS, builder_script, write

TOKEN = "parity-token-1234567890"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    root = base / "root"
    write(root / "clocked" / "clocked.py", builder_script("clocked", '''
        for i in range(2):
            thisExp.timestampOnFlip(win, 'thisRow.t', format=globalClock.format)
            win.flip()
            thisExp.addData('clock_format', str(globalClock.format))
            thisExp.addData('session_time', str(thisSession.getTime()))
            thisExp.nextEntry()'''))
    write(root / "edits" / "edits.py", builder_script(
        "edits", "expInfo['insertedKey'] = 'insertedValue'\nthisExp.addData('v', 1)\nthisExp.nextEntry()"))
    shutil.copytree(DEMOS / "Feature Demos" / "noise", root / "noise")
    process, banner = start_serve(root, base / "data", "--token", TOKEN, "--clock", "iso")
    try:
        yield banner["WebSocket"], root, base / "data"
    finally:
        stop_serve(process)


def test_clock_iso_stamps_rows_with_wall_clock_time_and_is_recorded(served):
    url, _root, _data = served
    with Client(url, TOKEN, reconnect=False) as client:
        run = client.run("clocked", {"participant": "iso"})
        end = run.wait(timeout=120)
        assert end.data["outcome"] == "completed", end.data
        record = client.get_run(run_id=run.run_id)
    rows = read_csv(run_csv(Path(record["data_dir"])))
    stamp = rows[0]["thisRow.t"]
    parsed = datetime.strptime(stamp.split("+")[0], "%Y-%m-%d_%H:%M:%S.%f")  # PsychoPy's ISO form
    assert abs((datetime.now() - parsed).total_seconds()) < 3600 * 24
    from session import records

    assert records.read_manifest(Path(record["data_dir"]))["clock"]["format"] == "iso"


def test_get_run_has_the_exp_info_the_run_ended_with(served):
    url, _root, _data = served
    with Client(url, TOKEN, reconnect=False) as client:
        run = client.run("edits", {"participant": "e1"})
        assert run.wait(timeout=120).data["outcome"] == "completed"
        record = client.get_run(run_id=run.run_id)
    assert record["exp_info"]["insertedKey"] == "insertedValue"
    assert record["exp_info"]["participant"] == "e1"


def test_problems_are_listed_and_a_refused_run_says_why(served):
    url, _root, _data = served
    with Client(url, TOKEN, reconnect=False) as client:
        with pytest.raises(LiaisonError) as refused:
            client.run("noise")
        assert refused.value.code == "experiment_error"
        assert any(p["code"] == "plugin_missing" for p in refused.value.details["problems"])
        listed = {e["key"]: e for e in client.list_experiments()}
        assert any(p["code"] == "plugin_missing" for p in listed["noise"]["problems"])
        assert listed["edits"]["problems"] == [] or all(p["severity"] == "warning"
                                                        for p in listed["edits"]["problems"])
        assert client.state()["status"] == "idle"
