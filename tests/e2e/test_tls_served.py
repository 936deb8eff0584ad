"""Real TLS on loopback: ``liaison serve --tls`` on 127.0.0.1, pinned clients, a browser that trusts the pin.

The server is the real CLI process with its generated certificate; the
clients are the real Python client, the CLI and Chromium. Chromium trusts the
certificate by its public key (``--ignore-certificate-errors-spki-list``), so
any other certificate would still be refused: pinned, not "ignore all errors".
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import urllib.request

import pytest

from conftest import liaison_command, make_root, start_serve, stop_serve

from liaison.client import Client, ConnectionLost
from liaison.client.tls import pinned_context
from liaison.server.tls import certificate_fingerprint, spki_hash

TOKEN = "tls-test-token-0123456789"
WRONG = "SHA256:" + ":".join(["AB"] * 32)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    root, data = make_root(base, fixtures=False), base / "data"
    process, banner = start_serve(root, data, "--tls", "--token", TOKEN)
    state = {"process": process, "banner": banner, "root": root, "data": data,
             "url": banner["WebSocket"], "home": banner["Dashboard"].split("#")[0]}
    try:
        yield state
    finally:
        stop_serve(state["process"])  # the restart test replaces it


def test_serve_prints_wss_https_and_the_certificate_fingerprint(tls_server):
    banner, data = tls_server["banner"], tls_server["data"]
    assert banner["WebSocket"].startswith("wss://127.0.0.1:")
    assert banner["Dashboard"].startswith("https://127.0.0.1:")
    cert, key = data / "tls" / "cert.pem", data / "tls" / "key.pem"
    assert banner["TLS"] == certificate_fingerprint(cert.read_bytes())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_pinned_client_connects_and_runs(tls_server):
    with Client(tls_server["url"], TOKEN, fingerprint=tls_server["banner"]["TLS"]) as client:
        assert client.request("ping")["pong"] is True
        run = client.run("rt_demo", {"participant": "tls"})
        end = run.wait(timeout=180)
    assert end.event == "run_finished" and end.data["outcome"] == "completed"
    # the run's CSV over https, pinned the same way (a blocking urllib socket this time)
    csv_name = next(f for f in end.data["data_files"] if f.endswith(".csv"))
    request = urllib.request.Request(f"{tls_server['home']}api/runs/{run.run_id}/files/{csv_name}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    context = pinned_context(tls_server["banner"]["TLS"])
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        rows = response.read().decode("utf-8-sig").splitlines()
    assert response.status == 200 and len(rows) == end.data["rows"] + 1


def test_a_wrong_fingerprint_is_refused_before_anything_is_sent(tls_server):
    with pytest.raises(ConnectionLost) as refused:
        Client(tls_server["url"], TOKEN, fingerprint=WRONG, reconnect=False).connect()
    message = refused.value.message
    assert "not the pinned" in message and WRONG in message and tls_server["banner"]["TLS"] in message
    request = urllib.request.Request(tls_server["home"] + "healthz")
    with pytest.raises(urllib.error.URLError, match="not the pinned"):
        urllib.request.urlopen(request, context=pinned_context(WRONG), timeout=30)


def test_an_unpinned_client_is_told_how_to_trust_the_server(tls_server, monkeypatch):
    monkeypatch.delenv("LIAISON_FINGERPRINT", raising=False)
    with pytest.raises(ConnectionLost, match="--fingerprint") as refused:
        Client(tls_server["url"], TOKEN, reconnect=False).connect()
    assert "self-signed" in refused.value.message or "verify" in refused.value.message


def test_the_certificate_as_a_ca_file_is_trusted(tls_server):
    ca_file = str(tls_server["data"] / "tls" / "cert.pem")
    with Client(tls_server["url"], TOKEN, ca_file=ca_file) as client:
        assert client.request("ping")["pong"] is True


def test_plain_ws_to_a_tls_server_fails_clearly(tls_server):
    plain = tls_server["url"].replace("wss://", "ws://")
    with pytest.raises(ConnectionLost, match="use wss://"):
        Client(plain, TOKEN, reconnect=False).connect()


def test_the_cli_pins_with_the_environment_or_the_option(tls_server):
    env = {**os.environ, "LIAISON_TOKEN": TOKEN, "LIAISON_FINGERPRINT": tls_server["banner"]["TLS"]}
    done = subprocess.run([*liaison_command(), "send", tls_server["url"], "ping"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pong"] is True
    done = subprocess.run([*liaison_command(), "send", tls_server["url"], "ping", "--fingerprint", WRONG],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not the pinned" in done.stderr
    done = subprocess.run([*liaison_command(), "send", tls_server["url"], "ping", "--fingerprint", "12:34"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "64 hex digits" in done.stderr


def test_the_dashboard_loads_over_https_with_the_certificate_pinned(tls_server):
    from playwright.sync_api import expect, sync_playwright

    from test_dashboard import CHROMIUM, CHROMIUM_ARGS

    pin = spki_hash((tls_server["data"] / "tls" / "cert.pem").read_bytes())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{tls_server['home']}#token={TOKEN}")
            expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            assert page.evaluate("location.protocol") == "https:"
            expect(page.locator("#plaintext-warning")).to_have_count(0)
            assert not errors, errors
        finally:
            browser.close()
        # A browser without the pin refuses the page: the flag above trusts this certificate, not any.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            with pytest.raises(Exception, match="ERR_CERT"):
                browser.new_page().goto(tls_server["home"])
        finally:
            browser.close()


def test_a_restart_keeps_the_certificate(tls_server, tmp_path):
    """Last in this module: it restarts the module's server on the same data folder."""
    before = tls_server["banner"]["TLS"]
    stop_serve(tls_server["process"])
    process, banner = start_serve(tls_server["root"], tls_server["data"], "--tls", "--token", TOKEN)
    tls_server["process"] = process
    assert banner["TLS"] == before
    with Client(banner["WebSocket"], TOKEN, fingerprint=before) as client:
        assert client.request("ping")["pong"] is True


def test_the_dashboard_warns_when_it_is_served_in_clear_text_off_loopback(server):
    """A page reached by a network name over http:// (Chromium maps the name to loopback: no traffic leaves)."""
    from playwright.sync_api import expect, sync_playwright

    from test_dashboard import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP lab-pc.test 127.0.0.1"])
        try:
            page = browser.new_page()
            page.goto(f"http://lab-pc.test:{server.port}/#token={server.token}")
            expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            warning = page.locator("#plaintext-warning")
            expect(warning).to_be_visible()
            expect(warning).to_contain_text(re.compile("not encrypted", re.I))
            page.goto(f"http://127.0.0.1:{server.port}/#token={server.token}")  # loopback: nothing to warn about
            expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            expect(page.locator("#plaintext-warning")).to_have_count(0)
        finally:
            browser.close()
