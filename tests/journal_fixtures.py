"""Journal test data shared by the unit and end-to-end tiers: numbered events and whole runs."""

from __future__ import annotations

from liaison.protocol import event_json
from session.events import DataRows, Publisher, RunFinished, RunStarted
from liaison.store.journal import Journal


def published(journal: Journal, events, batch: int = 1):
    """Number the events and append them to the journal in transactions of ``batch``."""
    publisher = Publisher(first_seq=journal.last_seq + 1)
    numbered = [publisher.publish(e) for e in events]
    items = [(e, "runs" if e.type.startswith("run_") else "data", event_json(e)) for e in numbered]
    for i in range(0, len(items), batch):
        journal.append(items[i:i + batch])
    return numbered


def a_run(run_id="r1", rows=3, end=True, data_dir="/nonexistent"):
    events = [RunStarted(run_id=run_id, key="demo", exp_info={"participant": "p"}, data_dir=data_dir)]
    events += [DataRows(run_id=run_id, key="demo", first_row=i, rows=[{"i": i, "rt": 0.5 + i}]) for i in range(rows)]
    if end:
        events.append(RunFinished(run_id=run_id, key="demo", outcome="completed", rows=rows, data_files=["a.csv"],
                                  duration=1.0))
    return events
