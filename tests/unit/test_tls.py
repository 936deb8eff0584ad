"""TLS policy and the generated certificate: encrypted off loopback, pinned by a fingerprint that lasts.

Nothing here listens on a socket: the decision for ``--host 0.0.0.0`` is
asserted on the plan and the server's SSL context, as the issue asks.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat

import pytest

from liaison.client.tls import FINGERPRINT_ENV, client_context, normalise_fingerprint, pinned_context
from liaison.server.config import ServerConfig
from liaison.server.tls import (
    PLAINTEXT_ACK_FLAG, TlsConfigError, certificate_fingerprint, ensure_self_signed, plan_tls,
)


def plan_for(config: ServerConfig):
    return plan_tls(config.host, config.data_dir, tls=config.tls, cert=config.tls_cert, key=config.tls_key,
                    accept_plaintext=config.accept_plaintext)


def test_any_address_without_a_certificate_gets_tls_with_a_generated_one(tmp_path):
    config = ServerConfig(root=tmp_path, host="0.0.0.0", data_dir=tmp_path / "data")
    plan = plan_for(config)
    assert plan.enabled and plan.generated
    assert plan.cert == tmp_path / "data" / "tls" / "cert.pem"
    assert isinstance(plan.context(), ssl.SSLContext)
    assert stat.S_IMODE(plan.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(plan.cert.parent.stat().st_mode) == 0o700
    assert plan.fingerprint.startswith("SHA256:") and len(plan.fingerprint) == 7 + 64 + 31


def test_the_certificate_names_this_host_and_loopback(tmp_path):
    from cryptography import x509

    cert, _ = ensure_self_signed(tmp_path, "192.0.2.7")
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    addresses = sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in names and socket.gethostname() in names
    assert ipaddress.ip_address("127.0.0.1") in addresses and ipaddress.ip_address("::1") in addresses
    assert ipaddress.ip_address("192.0.2.7") in addresses  # the address it was asked to bind


def test_the_certificate_is_made_once_per_data_folder(tmp_path):
    first = plan_tls("0.0.0.0", tmp_path, tls=None)
    again = plan_tls("0.0.0.0", tmp_path, tls=None)
    assert again.cert.read_bytes() == first.cert.read_bytes()
    assert again.fingerprint == first.fingerprint
    elsewhere = plan_tls("0.0.0.0", tmp_path / "other", tls=None)
    assert elsewhere.fingerprint != first.fingerprint


def test_loopback_stays_plain_unless_forced(tmp_path):
    assert not plan_tls("127.0.0.1", tmp_path).enabled
    assert not plan_tls("::1", tmp_path).enabled
    assert not (tmp_path / "tls").exists()  # no certificate made when none is needed
    assert plan_tls("127.0.0.1", tmp_path, tls=True).enabled


def test_plain_text_off_loopback_needs_the_acknowledgement(tmp_path):
    with pytest.raises(TlsConfigError, match=PLAINTEXT_ACK_FLAG):
        plan_tls("0.0.0.0", tmp_path, tls=False)
    plan = plan_tls("0.0.0.0", tmp_path, tls=False, accept_plaintext=True)
    assert not plan.enabled and plan.context() is None
    assert not (tmp_path / "tls").exists()


def test_given_certificate_is_used_and_contradictions_are_refused(tmp_path):
    cert, key = ensure_self_signed(tmp_path / "mine", "127.0.0.1")
    plan = plan_tls("0.0.0.0", tmp_path / "data", cert=cert, key=key)
    assert plan.enabled and not plan.generated and plan.cert == cert
    assert not (tmp_path / "data" / "tls").exists()
    with pytest.raises(TlsConfigError, match="go together"):
        plan_tls("0.0.0.0", tmp_path, cert=cert)
    with pytest.raises(TlsConfigError, match="contradicts"):
        plan_tls("0.0.0.0", tmp_path, tls=False, cert=cert, key=key)
    with pytest.raises(TlsConfigError, match="no such file"):
        plan_tls("0.0.0.0", tmp_path, cert=tmp_path / "nope.pem", key=key)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TlsConfigError, match="cannot use the certificate"):
        plan_tls("0.0.0.0", tmp_path, cert=bad, key=key).context()


def test_fingerprints_are_read_in_any_usual_spelling(tmp_path):
    cert, _ = ensure_self_signed(tmp_path, "127.0.0.1")
    canonical = certificate_fingerprint(cert.read_bytes())
    bare = canonical[7:].replace(":", "").lower()
    assert normalise_fingerprint(bare) == canonical
    assert normalise_fingerprint("sha256:" + canonical[7:].lower()) == canonical
    with pytest.raises(ValueError, match="64 hex digits"):
        normalise_fingerprint("SHA256:AB:CD")


def test_client_contexts(monkeypatch, tmp_path):
    monkeypatch.delenv(FINGERPRINT_ENV, raising=False)
    assert client_context("ws://127.0.0.1:8765/") is None
    system = client_context("wss://127.0.0.1:8765/")
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    cert, _ = ensure_self_signed(tmp_path, "127.0.0.1")
    with_ca = client_context("wss://x/", ca_file=str(cert))
    assert with_ca.verify_mode == ssl.CERT_REQUIRED and with_ca.cert_store_stats()["x509"] == 1
    monkeypatch.setenv(FINGERPRINT_ENV, "AB" * 32)
    pinned = client_context("wss://x/")
    assert pinned.sslobject_class is not ssl.SSLObject and pinned.sslsocket_class is not ssl.SSLSocket
    assert isinstance(pinned_context("ab" * 32), ssl.SSLContext)
