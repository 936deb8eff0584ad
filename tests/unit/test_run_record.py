"""A run's record holds the expInfo it ended with (experiments add keys, as PsychoPy's testEditExpInfo does)."""

from __future__ import annotations

from journal_fixtures import published
from session.events import RunFailed, RunFinished, RunStarted
from liaison.store.journal import Journal


def test_get_run_returns_the_exp_info_the_run_ended_with(tmp_path):
    journal = Journal.in_dir(tmp_path)
    try:
        published(journal, [
            RunStarted(run_id="r1", key="edits", exp_info={"participant": "p"}, data_dir="/x"),
            RunFinished(run_id="r1", key="edits", outcome="completed", rows=1, data_files=[], duration=1.0,
                        exp_info={"participant": "p", "insertedKey": "insertedValue"}),
            RunStarted(run_id="r2", key="edits", exp_info={"participant": "q"}, data_dir="/y"),
            RunFailed(run_id="r2", key="edits", error="x", traceback="", exp_info={"participant": "q2"}),
        ])
        assert journal.run("r1")["exp_info"] == {"participant": "p", "insertedKey": "insertedValue"}
        assert journal.run("r2")["exp_info"] == {"participant": "q2"}
    finally:
        journal.close()
