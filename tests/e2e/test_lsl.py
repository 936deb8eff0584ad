"""The LSL plugin against a real liblsl: a real inlet here, the outlet in a real server's worker.

Discovery runs on loopback only (``tests/lsl_loopback.cfg`` via ``LSLAPICFG``,
for this process and the server's). If LSL cannot find the outlet, the test
FAILS saying so: a skipped sync test would hide exactly the failure a lab
would meet.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import pytest

from conftest import make_root, read_csv, run_csv, start_serve, stop_serve

LSL_CONFIG = Path(__file__).resolve().parent.parent / "lsl_loopback.cfg"
os.environ["LSLAPICFG"] = str(LSL_CONFIG)  # before this process first uses liblsl

import pylsl  # noqa: E402

from liaison.client import Client  # noqa: E402

TOKEN = "lsl-test-token-1234567890"
TOLERANCE = 0.001  # seconds: a marker vs the flip time the experiment recorded


def resolve_or_fail(source_id: str, timeout: float = 20.0):
    streams = pylsl.resolve_byprop("source_id", source_id, timeout=timeout)
    if not streams:
        pytest.fail(f"LSL discovery found no stream with source_id {source_id!r} within {timeout:g} s on loopback "
                    f"(config {LSL_CONFIG}); liblsl's resolver needs UDP to 127.0.0.1 on port 16571 and TCP/UDP "
                    "on ports 16572+ in this network namespace")
    inlet = pylsl.StreamInlet(streams[0], max_buflen=60, recover=True)
    inlet.open_stream(timeout=10)
    return streams[0], inlet


def pull_until(inlet, stop, timeout: float = 60.0) -> list[tuple[dict, float]]:
    """Samples (parsed JSON, timestamp) until ``stop(sample)`` is true, within a bounded time."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample, stamp = inlet.pull_sample(timeout=0.5)
        if sample is None:
            continue
        marker = json.loads(sample[0])
        got.append((marker, stamp))
        if stop(marker):
            return got
    raise AssertionError(f"no end marker within {timeout:g} s; got {[m['event'] for m, _ in got]}")


@pytest.fixture(scope="module")
def lsl_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("lsl")
    root = make_root(base)
    source = f"liaison-ci-{secrets.token_hex(4)}"  # unique: another run's outlet on this machine is not ours
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    env["LSLAPICFG"] = str(LSL_CONFIG)
    process, banner = start_serve(root, base / "data", "--token", TOKEN, "--plugin",
                                  f"lsl:name=ci-rig,source_id={source},data=true", env=env)
    try:
        markers_info, markers = resolve_or_fail(f"{source}-markers")
        data_info, data = resolve_or_fail(f"{source}-data")
        yield {"url": banner["WebSocket"], "markers": markers, "data": data, "markers_info": markers_info,
               "data_info": data_info, "data_dir": base / "data"}
    finally:
        stop_serve(process)


def test_streams_are_described_as_liaison_markers_and_rows(lsl_server):
    info = lsl_server["markers"].info(timeout=10)
    assert (info.type(), info.channel_count(), info.nominal_srate(), info.channel_format()) == \
        ("Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string)
    assert info.name() == "Liaison ci-rig markers"
    liaison = info.desc().child("liaison")
    from liaison import __version__

    assert liaison.child_value("version") == __version__ and liaison.child_value("rig") == "ci-rig"
    assert lsl_server["data"].info(timeout=10).type() == "LiaisonRows"


def test_every_marker_of_a_real_run_arrives_in_order_stamped_with_its_flip(lsl_server):
    markers, data = lsl_server["markers"], lsl_server["data"]
    n_trials = 6
    with Client(lsl_server["url"], TOKEN, reconnect=False) as client:
        run = client.run("rt_demo", {"participant": "lsl-p01", "n_trials": n_trials})
        for event in client.events(timeout=60):  # commands once the first trial is done
            if event.event == "data_rows" and event.run_id == run.run_id and event.data["rows"]:
                break
        client.annotate(text="electrode 5 re-gelled")
        client.add_data(name="impedance_ok", value=True)
        end = run.wait(timeout=120)
    assert end.data["outcome"] == "completed", end.data
    got = pull_until(markers, lambda m: m["event"] == "run_end")
    run_markers = [(m, t) for m, t in got if m.get("run_id") == run.run_id]
    assert [m for m, _ in got] == [m for m, _ in run_markers], "only this run's markers arrived"
    events = [m["event"] for m, _ in run_markers]

    # none lost, none extra, in order: the boundaries of every trial, and each command once
    boundaries = [m for m in events if m in ("run_start", "trial_start", "routine_start", "routine_end",
                                             "trial_end", "run_end")]
    assert boundaries == ["run_start"] + ["trial_start", "routine_start", "routine_end", "trial_end"] * n_trials \
        + ["run_end"]
    assert [m for m in events if m not in boundaries] == ["annotation", "data"]
    by_event = {}
    for marker, stamp in run_markers:
        by_event.setdefault(marker["event"], []).append((marker, stamp))
    start = by_event["run_start"][0][0]
    assert (start["experiment"], start["participant"]) == ("rt_demo", "lsl-p01")
    finish = by_event["run_end"][0][0]
    assert (finish["outcome"], finish["rows"]) == ("completed", n_trials)
    assert [m["n"] for m, _ in by_event["trial_start"]] == list(range(n_trials))
    assert [m["row"] for m, _ in by_event["trial_end"]] == list(range(n_trials))
    assert by_event["annotation"][0][0]["text"] == "electrode 5 re-gelled"
    assert (by_event["data"][0][0]["name"], by_event["data"][0][0]["value"]) == ("impedance_ok", True)
    stamps = [t for _, t in run_markers]
    assert stamps == sorted(stamps), "markers are pushed in the order of their timestamps"

    # timestamps: the flips the experiment recorded (globalClock times; run_start says where its 0 is on LSL)
    correction = markers.time_correction(timeout=10)
    zero = start["clock_zero"]
    rows = read_csv(run_csv(lsl_server["data_dir"] / "runs" / run.run_id))
    assert len(rows) == n_trials
    compared = 0
    for i, row in enumerate(rows):
        first_flip = zero + float(row["thisRow.t"])  # timestampOnFlip at the trial's first frame
        assert abs(float(row["fixation.started"]) - float(row["thisRow.t"])) < 1e-9
        expected = {"trial_start": first_flip, "routine_start": first_flip}
        # timestampOnFlip of the frame that took the target off; absent only when a stall longer than the
        # fixation (a saturated machine) ended the trial before the target was ever drawn
        if row["target.stopped"]:
            expected["routine_end"] = expected["trial_end"] = zero + float(row["target.stopped"])
        for name, flip in expected.items():
            stamp = by_event[name][i][1] + correction
            assert abs(stamp - flip) < TOLERANCE, (name, i, stamp - flip)
            compared += 1
    assert compared >= 4 * n_trials - 4, "nearly every trial drew its target"

    # the data outlet: every row, as JSON, in order
    rows_over_lsl = pull_until(data, lambda m: m["row"] == n_trials - 1, timeout=30)
    mine = [m for m, _ in rows_over_lsl if m["run_id"] == run.run_id]
    assert [m["row"] for m in mine] == list(range(n_trials))
    assert [m["data"]["rt"] for m in mine] == [float(r["rt"]) for r in rows]

    # the budget record of the frame-exact hooks: in the end event and in the manifest
    record = end.data["plugins"]["lsl"]
    assert record["calls"] == len(run_markers)  # one hook call per marker
    assert record["errors"] == 0 and record["budget_ms"] == 0.5
    manifest = json.loads((lsl_server["data_dir"] / "runs" / run.run_id / "manifest.json").read_text())
    assert manifest["plugins"]["lsl"]["calls"] == record["calls"]


def test_pause_resume_and_stop_are_marked_and_the_run_end_says_stopped(lsl_server):
    markers = lsl_server["markers"]
    with Client(lsl_server["url"], TOKEN, reconnect=False) as client:
        run = client.run("frames_demo", {"n_trials": 500, "frames_per_trial": 5})
        for event in client.events(timeout=60):
            if event.event == "data_rows" and event.run_id == run.run_id and event.data["rows"]:
                break
        run.pause()
        run.resume()
        run.stop()
        end = run.wait(timeout=120)
    assert end.data["outcome"] == "stopped"
    stamped = pull_until(markers, lambda m: m["event"] == "run_end")
    got = [m for m, _ in stamped]
    controls = [(m["event"], t) for m, t in stamped if m["event"] in ("pause", "resume", "stop")]
    assert [e for e, _ in controls] == ["pause", "resume", "stop"]
    assert stamped[0][1] <= controls[0][1] <= controls[1][1] <= controls[2][1] <= stamped[-1][1]
    assert got[0]["event"] == "run_start" and got[-1] == {**got[-1], "event": "run_end", "outcome": "stopped"}
    stops = [m for m in got if m["event"] == "stop"]
    assert len(stops) == 1 and stops[0]["outcome"] == "stopped"
    # a hand-written script without routines still gets its trials (sendExperimentData ... nextEntry)
    ended = [m for m in got if m["event"] == "trial_end"]
    assert ended and [m["row"] for m in ended] == list(range(len(ended)))


def test_a_compiled_builder_experiment_gets_routine_markers_outside_loops_too(lsl_server):
    """stroop_lite.psyexp, compiled by PsychoPy: instructions, a trials loop, thanks."""
    markers = lsl_server["markers"]
    with Client(lsl_server["url"], TOKEN, reconnect=False) as client:
        run = client.run("stroop_lite", {"participant": "lsl-stroop"})
        end = run.wait(timeout=180)
    assert end.data["outcome"] == "completed", end.data
    stamped = pull_until(markers, lambda m: m["event"] == "run_end")
    rows = read_csv(run_csv(lsl_server["data_dir"] / "runs" / run.run_id))
    trial_rows = [i for i, row in enumerate(rows) if row.get("trials.thisN") not in (None, "")]
    shape = [(m["event"], m.get("routine") or m.get("row")) for m, _ in stamped]
    assert shape == [("run_start", None), ("routine_start", "instructions"), ("routine_end", "instructions")] + [
        item for row in trial_rows
        for item in (("trial_start", row), ("routine_start", "trial"), ("routine_end", "trial"), ("trial_end", row))
    ] + [("routine_start", "thanks"), ("routine_end", "thanks"), ("run_end", None)]
    correction = markers.time_correction(timeout=10)
    zero = stamped[0][0]["clock_zero"]
    starts = [t + correction for m, t in stamped if m["event"] == "routine_start"]
    recorded = [float(rows[0]["instrText.started"])] + [float(rows[i]["thisRow.t"]) for i in trial_rows]
    for stamp, flip in zip(starts, recorded):
        assert abs(stamp - (zero + flip)) < TOLERANCE


def test_after_a_killed_worker_the_fresh_one_offers_the_same_source_id(lsl_server):
    """A hung run is aborted (its worker killed); recorders re-find the markers by source_id."""
    before = lsl_server["markers_info"]
    with Client(lsl_server["url"], TOKEN, reconnect=False) as client:
        hung = client.run("hangs_demo", {"participant": "lsl-hang"})
        for event in client.events(timeout=60):
            if event.event == "data_rows" and event.run_id == hung.run_id:
                break
        assert client.abort(grace=0.5)["killed"] is True
        assert hung.wait(timeout=60).data["outcome"] == "aborted"
        streams = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not streams:  # the fresh worker's outlet, same source_id
            streams = [s for s in pylsl.resolve_byprop("source_id", before.source_id(), timeout=2)
                       if s.uid() != before.uid()]
        assert streams, "the new worker's outlet was not found by the old source_id"
        inlet = pylsl.StreamInlet(streams[0])
        inlet.open_stream(timeout=10)
        run = client.run("frames_demo", {"participant": "lsl-after", "n_trials": 2, "frames_per_trial": 3})
        assert run.wait(timeout=120).data["outcome"] == "completed"
    got = [m for m, _ in pull_until(inlet, lambda m: m["event"] == "run_end")]
    assert got[0]["event"] == "run_start" and got[0]["run_id"] == run.run_id
    assert [m["event"] for m in got if m["event"].startswith("trial")] == ["trial_start", "trial_end"] * 2
