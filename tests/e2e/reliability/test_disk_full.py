"""A full disk under a running experiment: nothing a client saw is lost, nobody is left guessing.

On a 2 MiB tmpfs the server once sent clients 4,000 rows while its journal
held 212, told nobody, never ended the run, and after a restart reused
sequence numbers clients had already seen. The promise now: a client only
sees what is on disk; when the journal cannot be written, fan-out stops,
the run is stopped, every client gets an ``alert``, runs are refused until
space returns, and no ``seq`` is ever reused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_root, start_serve, stop_serve
from liaison.client import Client, StorageUnavailable
from liaison.store.journal import Journal

TOKEN = "disk-full-token"


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs (CI runs as root; elsewhere mounting may not be permitted)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that leaves about ``leave`` bytes free on ``disk``."""
    free = shutil.disk_usage(disk).free
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_stops_the_run_and_loses_nothing_a_client_saw(tmp_path, small_disk):
    root = make_root(tmp_path)
    data_dir = small_disk / "data"
    process, banner = start_serve(root, data_dir, "--token", TOKEN)
    url = banner["WebSocket"]
    seen_rows: dict[int, dict] = {}
    seen_seqs: list[int] = []
    alerts: list[dict] = []
    try:
        with Client(url, TOKEN, reconnect=False) as client:
            filler = fill(small_disk, 400_000)
            run = client.run("rows_demo", {"participant": "full", "n_trials": 100_000, "payload": 2000})
            deadline = time.monotonic() + 120
            for event in client.events(timeout=30):
                if event.event == "alert":
                    alerts.append(event.data)
                    break
                seen_seqs.append(event.seq)
                if event.event == "data_rows" and event.run_id == run.run_id:
                    for offset, row in enumerate(event.data["rows"]):
                        seen_rows[event.data["first_row"] + offset] = row
                assert time.monotonic() < deadline, "the disk never filled"
            assert alerts and alerts[0]["code"] == "storage_failed", alerts
            assert "full" in alerts[0]["details"]["error"] or "space" in alerts[0]["details"]["error"]
            deadline = time.monotonic() + 60  # the run is stopped (the worker's state says so)
            while (state := client.request("state"))["status"] != "idle":
                assert time.monotonic() < deadline, f"the run was not stopped: {state}"
                time.sleep(0.1)
            with pytest.raises(StorageUnavailable):
                client.run("rows_demo", {"participant": "refused", "n_trials": 1})
            assert client.request("state")["storage_error"]
            os.unlink(filler)  # space returns
            for event in client.events(timeout=30):
                if event.event == "alert":
                    alerts.append(event.data)
                    break
            assert alerts[-1]["code"] == "storage_restored", alerts
            again = client.run("rows_demo", {"participant": "after", "n_trials": 3})
            assert again.wait(60).data["outcome"] == "completed"
            seen_seqs += [e.seq for e in again.events]
    finally:
        stop_serve(process)
    assert seen_rows, "the run produced rows before the disk filled"
    journal = Journal.in_dir(data_dir, readonly=True)
    try:
        on_disk = journal.data_rows(run.run_id)
        assert len(on_disk) >= len(seen_rows), "every row a client received is on disk"
        assert [r["i"] for r in on_disk[:len(seen_rows)]] == [seen_rows[i]["i"] for i in sorted(seen_rows)]
    finally:
        journal.close()
    # A new server on the folder numbers on from the journal: no seq a client saw is reused.
    process, banner = start_serve(root, data_dir, "--token", TOKEN)
    try:
        with Client(banner["WebSocket"], TOKEN) as client:
            client.annotate("after the restart")
            note = next(e for e in client.events(timeout=30) if e.event == "annotation")
            assert note.seq > max(seen_seqs)
    finally:
        stop_serve(process)
