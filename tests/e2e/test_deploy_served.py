"""Deploying experiments to a real server: ``liaison push``, the deploy channel, ``rescan``, the dashboard.

A real server with a real worker; pushed experiments are really run. Hostile
archives go through the same channel as real ones and must leave the
session root (and everything beside it) exactly as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from conftest import EXAMPLES, liaison_command

from liaison.client import Client, Conflict, Forbidden, InvalidArgs, Unauthorized
from liaison.client.push import push, rescan

SCRIPT = (EXAMPLES / "rt_demo" / "rt_demo.py").read_text()


def experiment_folder(base: Path, stem: str) -> Path:
    folder = base / f"{stem}_src"
    (folder / "stimuli").mkdir(parents=True)
    (folder / f"{stem}.py").write_text(SCRIPT)
    (folder / "stimuli" / "note.txt").write_text("shipped with the experiment")
    return folder


def snapshot(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if "data" not in p.relative_to(folder).parts}


def wait_for_event(client: Client, name: str, predicate, timeout: float = 60):
    for event in client.events(timeout=timeout):
        if event.event == name and predicate(event):
            return event
    raise AssertionError(f"no {name} event within {timeout} s")


def test_push_a_folder_then_run_it(server, tmp_path):
    folder = experiment_folder(tmp_path, "pushed_rt")
    root = server.config.root
    with Client(server.url, server.token) as watcher:
        env = {**os.environ, "LIAISON_TOKEN": server.token}
        done = subprocess.run([*liaison_command(), "push", server.url, str(folder), "--name", "pushed"], env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert "as pushed/" in done.stdout and "experiments: pushed_rt" in done.stdout
        added = wait_for_event(watcher, "experiment_added", lambda e: e.data["key"] == "pushed_rt")
        assert added.data["path"] == "pushed/pushed_rt.py"
        assert (root / "pushed" / "stimuli" / "note.txt").read_text() == "shipped with the experiment"
        assert "pushed_rt" in {e["key"] for e in watcher.request("list_experiments")}
        run = watcher.run("pushed_rt", {"participant": "pushed"})
        end = run.wait(timeout=180)
    assert end.event == "run_finished" and end.data["outcome"] == "completed" and end.data["rows"] > 0
    assert any(f.endswith(".csv") for f in end.data["data_files"])


def test_pushing_over_an_existing_folder_needs_replace(server, tmp_path):
    folder = experiment_folder(tmp_path, "replaced_rt")
    push(server.url, folder, server.token, name="replaced")
    (folder / "stimuli" / "note.txt").write_text("second version")
    with pytest.raises(Conflict, match="already exists"):
        push(server.url, folder, server.token, name="replaced")
    result = push(server.url, folder, server.token, name="replaced", replace=True)
    root = server.config.root
    assert (root / "replaced" / "stimuli" / "note.txt").read_text() == "second version"
    assert (root / result["replaced"] / "stimuli" / "note.txt").read_text() == "shipped with the experiment"
    assert result["added"] == []  # same file, same key: nothing new to announce


def hostile_zip(path: Path, kind: str, outside: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil_rt.py", SCRIPT)
        if kind == "dotdot":
            archive.writestr("../../escaped.py", "print('escaped')")
        elif kind == "absolute":
            archive.writestr(str(outside / "escaped.py"), "print('escaped')")
        elif kind == "symlink":
            info = zipfile.ZipInfo("link")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, str(outside))
    return path


async def raw_push(url: str, token: str, name: str, data: bytes) -> dict:
    async with connect(url.rstrip("/") + "/deploy") as ws:
        await ws.send(json.dumps({"type": "push", "token": token, "name": name, "size": len(data)}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            return ready
        await ws.send(data)
        return json.loads(await ws.recv())


@pytest.mark.parametrize("kind, why", [("dotdot", r"outside its folder"), ("absolute", "absolute path"),
                                       ("symlink", "symbolic link")])
def test_hostile_archives_are_refused_and_nothing_is_written(server, tmp_path, kind, why):
    root = server.config.root
    outside = root.parent
    before_root, before_outside = snapshot(root), {p.name for p in outside.iterdir()}
    archive = hostile_zip(tmp_path / "evil.zip", kind, outside)
    reply = asyncio.run(raw_push(server.url, server.token, "evil", archive.read_bytes()))
    assert reply["type"] == "error" and reply["code"] == "invalid_args" and re.search(why, reply["message"])
    assert snapshot(root) == before_root
    assert {p.name for p in outside.iterdir()} == before_outside
    assert not (root / "evil").exists()
    uploads = server.config.data_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # the received archive is gone too


def test_the_deploy_channel_needs_the_token_and_a_sane_size(server, tmp_path):
    folder = experiment_folder(tmp_path, "unauth_rt")
    with pytest.raises(Unauthorized):
        push(server.url, folder, "wrong-token", name="unauth")
    assert not (server.config.root / "unauth").exists()
    too_big = asyncio.run(_announce(server, server.config.max_upload_bytes + 1))
    assert too_big["type"] == "error" and too_big["code"] == "too_large"
    with pytest.raises(InvalidArgs, match="folder name"):
        push(server.url, folder, server.token, name="../up")


def _announce(server, size: int):
    async def go():
        async with connect(server.url.rstrip("/") + "/deploy") as ws:
            await ws.send(json.dumps({"type": "push", "token": server.token, "name": "big", "size": size}))
            return json.loads(await ws.recv())
    return go()


def test_rescan_registers_experiments_copied_in_by_hand(server):
    root = server.config.root
    (root / "copied").mkdir()
    shutil.copy(EXAMPLES / "rt_demo" / "rt_demo.py", root / "copied" / "copied_rt.py")
    with Client(server.url, server.token) as client:
        result = client.request("rescan")
        assert [e["key"] for e in result["added"]] == ["copied_rt"]
        added = wait_for_event(client, "experiment_added", lambda e: e.data["key"] == "copied_rt")
        assert added.data["path"] == "copied/copied_rt.py"
        assert client.request("rescan")["added"] == []  # nothing twice
    with Client(server.url, server.token, role="observer") as observer:
        with pytest.raises(Forbidden):
            observer.request("rescan")
    (root / "copied2").mkdir()
    shutil.copy(EXAMPLES / "rt_demo" / "rt_demo.py", root / "copied2" / "copied_two.py")
    assert [e["key"] for e in rescan(server.url, server.token)["added"]] == ["copied_two"]


def test_the_dashboard_uploads_a_zip_and_rescans(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from test_dashboard import CHROMIUM, CHROMIUM_ARGS

    archive = tmp_path / "browser_rt.zip"
    with zipfile.ZipFile(archive, "w") as out:  # as "Compress folder" makes it: one folder around everything
        out.writestr("browser_rt/browser_rt.py", SCRIPT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{server.port}/#token={server.token}")
            expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            card = page.locator("#deploy")
            expect(card).to_be_visible()
            page.locator("#deploy-file").set_input_files(str(archive))
            expect(page.locator("#deploy-name")).to_have_value("browser_rt")
            page.get_by_role("button", name="Upload").click()
            expect(page.locator("#deploy-status")).to_contain_text("Deployed as browser_rt/", timeout=60_000)
            expect(page.get_by_role("radio", name="browser_rt", exact=True)).to_be_visible(timeout=30_000)
            (server.config.root / "by_hand").mkdir()  # copied in by other means, after the upload's own rescan
            shutil.copy(EXAMPLES / "rt_demo" / "rt_demo.py", server.config.root / "by_hand" / "by_hand_rt.py")
            page.get_by_role("button", name="Rescan folder").click()
            expect(page.locator("#deploy-status")).to_contain_text("by_hand_rt", timeout=60_000)
            expect(page.get_by_role("radio", name="by_hand_rt", exact=True)).to_be_visible(timeout=30_000)
            assert not errors, errors
            # an observer sees no deploy card
            observer = browser.new_page()
            observer.goto(f"http://127.0.0.1:{server.port}/#token={server.token}&role=observer")
            expect(observer.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            expect(observer.locator("#deploy")).to_be_hidden()
        finally:
            browser.close()
    assert (server.config.root / "browser_rt" / "browser_rt.py").read_text() == SCRIPT


def test_a_folder_a_run_uses_is_never_replaced(server, tmp_path):
    folder = experiment_folder(tmp_path, "not_frames")
    root = server.config.root
    before = snapshot(root / "fixtures")
    with Client(server.url, server.token) as client:
        run = client.run("frames_demo", {"n_trials": "2000", "frames_per_trial": "20"})
        wait_for_event(client, "run_started", lambda e: e.run_id == run.run_id)
        try:
            with pytest.raises(Conflict, match="used by the run in progress"):
                push(server.url, folder, server.token, name="fixtures", replace=True)
        finally:
            client.stop()
            end = run.wait(timeout=120)
    assert end.data["outcome"] == "stopped"
    assert snapshot(root / "fixtures") == before
    assert not (root / ".liaison-replaced").exists() or not any(
        p.name.startswith("fixtures-") for p in (root / ".liaison-replaced").iterdir())
