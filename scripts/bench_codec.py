"""What serialising one event costs: the fan-out's hot path, encoders side by side in one run.

    .venv/bin/python scripts/bench_codec.py [--quick] [--out artifacts/bench_codec.json]

For a realistic ``data_rows`` event (one row of ~25 columns) and an
annotation, times ``event_json`` (``pydantic_core.to_json``, what the server
uses), the standard library's C encoder writing the same envelope (what it
used before), and the pydantic model path (``dumps(event_message(...))``,
the fallback), and checks that all three write the same bytes. Ratios are
measured in the same run, so a busy machine shifts them less than the times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "scripts")]

from benchlib.stats import percentiles  # noqa: E402
from liaison.protocol import dumps, event_json, event_message  # noqa: E402
from liaison.protocol.encoding import _payload_fields  # noqa: E402
from session.events import Annotated, DataRows, Publisher  # noqa: E402

STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stdlib_json(event) -> str:
    payload = {"v": 1, "type": "event", "seq": event.seq, "event": event.type, "time": float(event.time),
               "data": {f.name: getattr(event, f.name) for f in _payload_fields(type(event))}}
    return STDLIB.encode(payload)


def model_json(event) -> str:
    return dumps(event_message(event))


def sample_events():
    publisher = Publisher()
    row = {f"col{i}": i * 0.5 for i in range(15)}
    row.update({"participant": "p01", "session": "001", "resp.keys": "left", "resp.rt": 0.4321,
                "trials.thisN": 12, "trials.thisRepN": 0, "word": "rouge", "colour": "blue",
                "corrAns": "left", "resp.corr": 1})
    return {
        "data_rows": publisher.publish(DataRows(run_id="20260101T120000-stroop-a1b2c3", key="stroop",
                                                first_row=12, rows=[row])),
        "annotation": publisher.publish(Annotated(run_id=None, text="participant asked for a break")),
    }


def time_per_call(fn, event, repeat: int, rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fn(event)
        samples.append((time.perf_counter() - started) / repeat)
    return percentiles(samples, scale=1e6)  # µs per event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench_codec.json"))
    args = parser.parse_args()
    repeat, rounds = (2_000, 5) if args.quick else (20_000, 15)
    results = {}
    for name, event in sample_events().items():
        texts = {"to_json": event_json(event), "stdlib": stdlib_json(event), "model": model_json(event)}
        identical = len(set(texts.values())) == 1
        timings = {label: time_per_call(fn, event, repeat, rounds)
                   for label, fn in (("to_json", event_json), ("stdlib", stdlib_json), ("model", model_json))}
        results[name] = {"identical_output": identical, "bytes": len(texts["to_json"]), "us_per_event": timings,
                         "stdlib_over_to_json": timings["stdlib"]["p50"] / timings["to_json"]["p50"]}
        print(f"{name:11s} {len(texts['to_json']):5d} B  identical={identical}  "
              + "  ".join(f"{label} p50 {t['p50']:.2f} µs" for label, t in timings.items())
              + f"  stdlib/to_json {results[name]['stdlib_over_to_json']:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "codec", "quick": args.quick, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
