"""The server's small gatekeepers on their own: Host, Origin, tokens, file names, log lines."""

from __future__ import annotations

import logging

import pytest

from liaison.server.auth import Credentials, bearer
from liaison.server.connection import printable
from liaison.server.guards import HostCheck, host_name, origin_allowed
from liaison.server.http import attachment, inside
from liaison.server.logs import TokenRedactor
from liaison.store.journal import MAX_COMMAND_ARGS, command_row


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8765", "127.0.0.1"), ("LOCALHOST:80", "localhost"), ("[::1]:8765", "::1"), ("[::1]", "::1"),
    ("lab-pc", "lab-pc"), ("lab-pc:x", None), ("", None), (None, None), ("[::1", None), ("a" * 400, None),
])
def test_host_names_are_read_without_port_or_brackets(header, name):
    assert host_name(header) == name


def test_loopback_server_answers_to_loopback_names_only():
    check = HostCheck("127.0.0.1")
    for good in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.2"):
        assert check.allows(good), good
    for bad in ("attacker.example:8765", "192.168.1.5:8765", "localhost.attacker.example", None, ""):
        assert not check.allows(bad), bad  # DNS rebinding: a foreign name that resolves to 127.0.0.1


def test_wildcard_server_answers_to_addresses_its_names_and_listed_names():
    check = HostCheck("0.0.0.0", allowed=["stim-pc.lab.example"])
    assert check.allows("192.168.1.5:8765") and check.allows("[fe80::1]:8765")
    assert check.allows("STIM-PC.lab.example:8765") and check.allows("localhost")
    assert not check.allows("attacker.example")
    assert HostCheck("0.0.0.0", allowed=["*"]).allows("anything.example")


def test_server_bound_to_one_address_answers_to_that_address():
    check = HostCheck("10.0.0.7")
    assert check.allows("10.0.0.7:8765") and not check.allows("10.0.0.8") and not check.allows("localhost")


def test_origin_must_match_the_page_or_be_listed():
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", [])
    assert not origin_allowed("http://evil.example", "127.0.0.1:8765", [])
    assert origin_allowed("http://dash.example", "127.0.0.1:8765", ["http://dash.example"])


def test_observer_token_only_watches():
    creds = Credentials("controller-token", "observer-token")
    assert creds.role_for("controller-token", "controller") == "controller"
    assert creds.role_for("controller-token", "observer") == "observer"
    assert creds.role_for("observer-token", "observer") == "observer"
    assert creds.role_for("observer-token", "controller") is None
    assert creds.role_for("wrong", "observer") is None and creds.role_for(None, "observer") is None
    assert creds.can_read("observer-token") and not creds.can_control("observer-token")
    assert creds.can_control("controller-token")
    assert Credentials(None, no_auth=True).role_for(None, "controller") == "controller"
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None


def test_download_names_follow_rfc_6266():
    assert attachment("p01_rt.csv") == 'attachment; filename="p01_rt.csv"'
    value = attachment("Teilnehmer_Müller_日本.csv")
    value.encode("latin-1")  # a header must be Latin-1: this raised before
    assert 'filename="Teilnehmer_M_ller___.csv"' in value
    assert "filename*=UTF-8''Teilnehmer_M%C3%BCller_%E6%97%A5%E6%9C%AC.csv" in value
    assert '"' not in attachment('a"b.csv').split("filename=")[1].strip('"').split('"')[0]


def test_paths_that_cannot_be_files_are_refused_not_crashed(tmp_path):
    assert inside(tmp_path, "a\x00b") is None
    assert inside(tmp_path, "x" * 5000) is None
    assert inside(tmp_path, "../etc/passwd") is None
    assert inside(tmp_path, "sub/file.csv") == tmp_path.resolve() / "sub" / "file.csv"


def test_client_names_cannot_forge_log_lines():
    forged = "lab\nINFO liaison.server: client x (controller) -> abort"
    assert "\n" not in printable(forged) and printable(None) == "unnamed"
    assert printable("é") == "\\xe9"


def test_tokens_never_reach_a_log_line():
    record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, "< TEXT %s",
                               ('{"v":1,"type":"auth","token":"s3cret-token-value","role":"controller"}',), None)
    TokenRedactor().filter(record)
    assert "s3cret" not in record.getMessage() and '"token":"***"' in record.getMessage()
    header = logging.LogRecord("x", logging.DEBUG, __file__, 1, "Authorization: Bearer abc.def", (), None)
    TokenRedactor().filter(header)
    assert "abc.def" not in header.getMessage()


def test_the_audit_trail_keeps_who_and_what_not_the_payload():
    refused = command_row(client_id="c", client_name="n", role="observer", cmd="add_data",
                          args={"name": "x", "value": "y" * 900_000}, refused="forbidden")
    assert len(refused[5]) < 100 and "forbidden" in refused[5]
    big = command_row(client_id="c", client_name="n", role="controller", cmd="add_data",
                      args={"name": "x", "value": "y" * 900_000})
    assert len(big[5]) <= MAX_COMMAND_ARGS and "clipped_bytes" in big[5]
    small = command_row(client_id="c", client_name="n" * 500, role="controller", cmd="pause", args={})
    assert small[5] == "{}" and len(small[2]) == 100
