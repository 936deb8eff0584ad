"""How a client trusts a Liaison server over TLS: a pinned fingerprint, a CA file, or the system's roots.

A lab's booths use self-signed certificates (see ``liaison/server/tls.py``),
so the usual trust in public authorities does not apply. Pinning the
certificate's SHA-256 fingerprint (printed by ``liaison serve``) is as strong
and needs no authority: the handshake fails unless the server presents exactly
that certificate, before a single byte of the WebSocket or HTTP request (let
alone the token) is sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from urllib.parse import urlsplit

FINGERPRINT_ENV = "LIAISON_FINGERPRINT"
CA_FILE_ENV = "LIAISON_CA_FILE"


class FingerprintMismatch(ssl.SSLCertVerificationError):
    """The server's certificate is not the pinned one: a different server, or someone in between."""


def normalise_fingerprint(text: str) -> str:
    """``SHA256:AB:CD...`` from any of ``sha256:abcd...``, ``AB:CD...``, ``abcd...`` (64 hex digits)."""
    body = text.strip()
    if body.lower().startswith("sha256:"):
        body = body[7:]
    digits = re.sub(r"[:\s]", "", body).upper()
    if not re.fullmatch(r"[0-9A-F]{64}", digits):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, e.g. SHA256:AB:CD:...)")
    return "SHA256:" + ":".join(digits[i:i + 2] for i in range(0, 64, 2))


def fingerprint_of(der: bytes) -> str:
    """A DER certificate's SHA-256 fingerprint as ``SHA256:AB:CD:...``, the form ``liaison serve`` prints."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def _checker(expected: str):
    def check(der: bytes | None) -> None:
        got = fingerprint_of(der) if der else "no certificate"
        if got != expected:
            raise FingerprintMismatch(
                f"the server's certificate fingerprint is {got}, not the pinned {expected}: this is not the "
                "server you pinned (or someone is in between); check the fingerprint `liaison serve` printed")
    return check


def pinned_context(fingerprint: str) -> ssl.SSLContext:
    """A client context that accepts exactly the certificate with this SHA-256 fingerprint."""
    expected = normalise_fingerprint(fingerprint)
    check = _checker(expected)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the pin names the certificate itself; host names add nothing
    context.verify_mode = ssl.CERT_NONE  # chain checks replaced by the pin, checked in the handshake below

    class PinnedObject(ssl.SSLObject):  # asyncio (the async client)
        def do_handshake(self) -> None:
            super().do_handshake()
            check(self.getpeercert(binary_form=True))

    class PinnedSocket(ssl.SSLSocket):  # blocking sockets (urllib, for uploads and downloads)
        def do_handshake(self, *args, **kwargs) -> None:
            super().do_handshake(*args, **kwargs)
            check(self.getpeercert(binary_form=True))

    context.sslobject_class = PinnedObject
    context.sslsocket_class = PinnedSocket
    return context


def client_context(url: str, fingerprint: str | None = None, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The SSL context for ``url``: None for ``ws://``/``http://``; pinned, CA-file or system trust otherwise.

    ``fingerprint`` and ``ca_file`` default to ``LIAISON_FINGERPRINT`` and ``LIAISON_CA_FILE``.
    """
    if urlsplit(url).scheme not in ("wss", "https"):
        return None
    fingerprint = fingerprint or os.environ.get(FINGERPRINT_ENV) or None
    ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
    if fingerprint:
        return pinned_context(fingerprint)
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return ssl.create_default_context()


def explain_connect_error(url: str, exc: BaseException) -> str:
    """A sentence saying why connecting to ``url`` failed and what to do, for TLS mistakes especially."""
    scheme = urlsplit(url).scheme
    if isinstance(exc, FingerprintMismatch):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"cannot verify the certificate of {url}: {getattr(exc, 'verify_message', None) or exc}; pass the fingerprint "
                f"`liaison serve` printed (--fingerprint / fingerprint= / {FINGERPRINT_ENV}) or the server's "
                f"certificate as a CA file (--ca-file / ca_file= / {CA_FILE_ENV})")
    if isinstance(exc, ssl.SSLError) and scheme == "wss":
        return f"TLS with {url} failed ({exc}); is the server serving plain ws:// (then use ws://)?"
    if scheme in ("ws", "http"):
        return (f"cannot connect to {url}: {exc}; if the server uses TLS (the default off loopback), "
                "use wss:// and pass its fingerprint")
    return f"cannot connect to {url}: {exc}"
