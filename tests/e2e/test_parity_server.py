"""Parity through a real ``liaison serve``: --clock, problems over the wire, get_run's expInfo, devices."""

from __future__ import annotations

import shutil
import time
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
    write(root / "boxed" / "boxed.py", builder_script("boxed", '''
        box = ButtonBox(device="buttons")  # a Builder button box component naming its device
        keys = DeviceManager.getDevice("keys")
        keys.receiveMessage(keyboard.KeyPress(code="a", tDown=0.5, name="a"))  # as the hardware would
        box.device.receiveMessage(ButtonResponse(t=0.25, value=True, channel=1))
        thisExp.addData("box_class", type(box.device).__name__)
        thisExp.nextEntry()''', extra='''
        from psychopy.hardware import DeviceManager, keyboard
        from psychopy.hardware.button import ButtonBox, ButtonResponse
        '''))
    named = Path(__import__("psychopy").__file__).parent / "tests" / "data" / "test_session" / "root"
    shutil.copytree(named / "testNamedButtonBox", root / "testNamedButtonBox")  # PsychoPy's own test case
    shutil.copy(Path(__file__).parent.parent / "experiments" / "hangs_demo.py", root / "hangs_demo.py")
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


KEYS = {"name": "keys", "device_class": "psychopy.hardware.keyboard.KeyboardDevice",
        "params": {"backend": "event", "muteOutsidePsychopy": False}}
BUTTONS = {"name": "buttons", "device_class": "psychopy.hardware.button.KeyboardButtonBox",
           "params": {"buttons": ["a", "b"]}}


def inspected(client, key, timeout=120.0):
    """list_experiments once ``key`` has been inspected (the worker does that between runs)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = {e["key"]: e for e in client.list_experiments()}
        if listed[key]["problems"] is not None or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def hardware_events(client, run_id, want, timeout=60):
    seen = []
    for event in client.events(timeout=timeout):
        if event.event == "hardware_response" and event.data.get("run_id") == run_id:
            seen.append(event.data)
            if len(seen) >= want:
                break
    return seen


def test_devices_over_the_wire_persist_and_stream_their_responses(served):
    url, _root, data_dir = served
    with Client(url, TOKEN, reconnect=False) as client:
        listed = inspected(client, "testNamedButtonBox")
        assert listed["testNamedButtonBox"]["devices"] == {"required": ["testNamedButtonBox"],
                                                           "missing": ["testNamedButtonBox"]}
        assert any(p["code"] == "device_missing" for p in listed["testNamedButtonBox"]["problems"])
        before = client.run("boxed")  # its button box is not set up yet
        failed = before.wait(timeout=120)
        assert failed.event == "run_failed" and "Could not find device named 'buttons'" in failed.data["error"]

        with pytest.raises(LiaisonError) as bad:
            client.add_device(name="evil", device_class="os.system", params={})
        assert bad.value.code == "device_error", (bad.value.message, bad.value.details)
        with pytest.raises(LiaisonError) as wrong:
            client.add_device(name="odd", device_class="psychopy.hardware.button.KeyboardButtonBox",
                              params={"no_such_param": 1})
        assert wrong.value.code == "device_error" and "no_such_param" in wrong.value.message

        assert client.add_device(**KEYS)["ready"] is True
        assert client.add_device(**BUTTONS)["ready"] is True
        client.add_device(name="testNamedButtonBox", device_class="psychopy.hardware.button.KeyboardButtonBox")
        names = {d["name"]: d for d in client.list_devices()}
        assert {"keys", "buttons", "testNamedButtonBox"} <= set(names) and all(d["ready"] for d in names.values())
        listed = {e["key"]: e for e in client.list_experiments()}
        assert listed["testNamedButtonBox"]["devices"]["missing"] == []
        assert not any(p["code"] == "device_missing" for p in listed["testNamedButtonBox"]["problems"])
        available = client.list_available_devices(device_class="keyboard")
        assert isinstance(next(iter(available.values())), list)

        client.subscribe("hardware")  # opt-in: "all" does not carry it
        run = client.run("boxed")
        streamed = hardware_events(client, run.run_id, 2)
        assert run.wait(timeout=120).data["outcome"] == "completed"
        by_device = {e["device"]: e for e in streamed}
        assert by_device["keys"]["response"] == "KeyPress" and by_device["keys"]["t"] == 0.5
        assert by_device["buttons"]["response"] == "ButtonResponse" and by_device["buttons"]["data"]["channel"] == 1
        assert all(isinstance(e["session_time"], float) and e["session_time"] > 0 for e in streamed)
        record = client.get_run(run_id=run.run_id)
        assert read_csv(run_csv(Path(record["data_dir"])))[0]["box_class"] == "KeyboardButtonBox"

        hung = client.run("hangs_demo", {"participant": "restart"})
        for event in client.events(timeout=60):
            if event.event == "data_rows" and event.run_id == hung.run_id:
                break
        assert client.abort(grace=0.5)["killed"] is True  # a fresh worker: devices come back from devices.json
        assert {"keys", "buttons"} <= {d["name"] for d in client.list_devices() if d["ready"]}
        again = client.run("boxed")
        assert len(hardware_events(client, again.run_id, 2)) == 2
        assert again.wait(timeout=120).data["outcome"] == "completed"

        assert client.remove_device(name="keys") is True
        assert "keys" not in {d["name"] for d in client.list_devices()}
    import json

    stored = {d["name"] for d in json.loads((data_dir / "devices.json").read_text())}
    assert stored == {"buttons", "testNamedButtonBox"}
