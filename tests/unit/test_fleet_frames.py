"""The fleet's fast frame path says what the protocol core says, with rows kept as the booth's JSON text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.fleet.client import FleetCore
from liaison.fleet.store import problem_with
from liaison.protocol import ProtocolError
from liaison.protocol.client import ClientCore, Event

FUZZ = settings(settings.default)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                             max_size=3), max_leaves=8)
rows = st.dictionaries(st.text(), values, max_size=6)
spacing = st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", " :\n")])


def cores(last_seq: int | None = 0) -> tuple[ClientCore, FleetCore]:
    return ClientCore("t", last_seq=last_seq), FleetCore("t", last_seq=last_seq)


def outcome(core: ClientCore, raw: str) -> Any:
    try:
        return core.receive(raw)
    except ProtocolError as error:
        return ("error", error.code, error.message)


def rows_decoded(items: list[Any]) -> list[Any]:
    """The fleet's events with their row texts decoded, to compare with the core's."""
    out = []
    for item in items:
        if isinstance(item, Event) and item.event == "data_rows" and isinstance(item.data.get("rows"), list):
            assert all(isinstance(row, bytes) for row in item.data["rows"])
            item = Event(item.seq, item.event, item.time,
                         {**item.data, "rows": [json.loads(row) for row in item.data["rows"]]})
        out.append(item)
    return out


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 50), st.lists(rows, max_size=3)), min_size=1, max_size=5), spacing,
       st.booleans())
def test_event_frames_mean_the_same_with_rows_as_their_exact_text(events, separators, as_array):
    messages = [{"v": 1, "type": "event", "seq": seq, "event": "data_rows", "time": 1.5 + seq,
                 "data": {"run_id": "r", "key": "k", "first_row": seq, "rows": sent}} for seq, sent in events]
    raw = json.dumps(messages if as_array or len(messages) > 1 else messages[0], separators=separators)
    plain, fleet = cores(last_seq=10)
    expected, got = plain.receive(raw), fleet.receive(raw)
    assert [(e.seq, e.event, e.time, e.data["first_row"], e.data["rows"]) for e in expected] == \
           [(e.seq, e.event, e.time, e.data["first_row"], e.data["rows"]) for e in rows_decoded(got)]
    assert plain.last_seq == fleet.last_seq  # replay overlap (seq <= 10) dropped alike
    for event in got:
        # each row text is the exact span the booth sent
        for row in event.data["rows"]:
            assert row.decode() in raw
        assert problem_with(event.event, event.data) is None


@pytest.mark.parametrize("message", [
    {"type": "event", "seq": True, "event": "status", "time": 1.0, "data": {}},
    {"type": "event", "seq": 1.0, "event": "status", "time": 1.0, "data": {}},
    {"type": "event", "seq": -1, "event": "status", "time": 1.0, "data": {}},
    {"type": "event", "seq": 1, "event": 7, "time": 1.0, "data": {}},
    {"type": "event", "seq": 1, "event": "status", "time": "now", "data": {}},
    {"type": "event", "seq": 1, "event": "status", "time": True, "data": {}},
    {"type": "event", "seq": 1, "event": "status", "time": 1.0, "data": [1]},
    {"type": "event", "seq": 1, "event": "status", "time": 1},
    {"type": "event", "seq": 1, "event": "status", "time": 1, "data": None},
    {"type": "event", "seq": 1, "event": "data_rows", "time": 1.0, "data": {"run_id": 3, "rows": [{"a": 1}]}},
    {"type": "event", "seq": 1, "event": "data_rows", "time": 1.0, "data": {"run_id": "r", "rows": "no"}},
    {"type": "event", "seq": 1, "event": "data_rows", "time": 1.0, "data": {"run_id": "r", "rows": [1, {}]}},
    {"type": "event", "seq": 1, "event": "data_rows", "time": 1.0, "data": {"run_id": "r", "first_row": "2"}},
    {"type": "nonsense"},
    {"type": "gap", "from_seq": 1, "to_seq": 4},
    {"type": "alert", "code": "x", "message": "y"},
    [{"type": "event", "seq": 1, "event": "status", "time": 1.0, "data": {}}, {"type": "goodbye", "code": 1}],
    [{"type": "event", "seq": 1, "event": "status", "time": 1.0, "data": {}}, 5],
    "text",
])
def test_every_other_frame_is_the_protocol_cores_business(message):
    """Bad envelopes raise the core's own errors; mixed and non-event frames are read by the core itself."""
    raw = json.dumps(message)
    plain, fleet = cores()
    expected, got = outcome(plain, raw), outcome(fleet, raw)
    if isinstance(expected, tuple):
        assert got == expected
        return
    assert [(type(i), getattr(i, "seq", None), getattr(i, "event", None)) for i in expected] == \
           [(type(i), getattr(i, "seq", None), getattr(i, "event", None)) for i in got]
    for mine, theirs in zip(rows_decoded(got), expected):
        if isinstance(mine, Event) and mine.event == "data_rows":
            assert {k: mine.data[k] for k in mine.data if k != "first_row"} == \
                   {k: theirs.data[k] for k in mine.data if k != "first_row"}
        elif isinstance(mine, Event) and mine.event not in ("gap", "alert"):
            assert mine.data == theirs.data
    for item in got:
        if isinstance(item, Event) and item.event == "data_rows":
            # wrongly typed data: kept whole for the store, which says what is wrong with it
            assert problem_with(item.event, item.data) is not None


def test_a_data_rows_event_keeps_only_what_the_store_reads():
    raw = json.dumps({"type": "event", "seq": 3, "event": "data_rows", "time": 2.0,
                      "data": {"run_id": "r", "key": "k", "first_row": 4, "rows": [{"rt": 0.5}], "extra": 1}})
    (event,) = FleetCore("t", last_seq=0).receive(raw)
    assert event.data == {"run_id": "r", "first_row": 4, "rows": [b'{"rt": 0.5}']}
