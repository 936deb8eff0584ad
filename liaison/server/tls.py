"""TLS for the WebSocket and the dashboard: off loopback, encrypted by default.

A lab has no certificate authority, so when no certificate is given the
server makes a self-signed one, once per data folder (``DATA/tls/``: the key
readable by its owner only), and reuses it on every restart so the
fingerprint clients pinned stays valid. The fingerprint (SHA-256 of the
certificate, as browsers show it) is printed at start beside the URL.

The policy, decided by :func:`plan_tls` from the server's settings:

- ``--tls-cert/--tls-key`` given: TLS with that certificate;
- ``--tls`` (also on loopback, e.g. for tests) or a non-loopback host: TLS,
  with the generated certificate;
- ``--no-tls`` off loopback: plain text, only with the explicit
  acknowledgement flag (the dashboard then shows a warning banner);
- loopback: plain text (nothing crosses a network).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("liaison.server")

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
CERT_FILE, KEY_FILE = "cert.pem", "key.pem"
VALID_DAYS = 3650  # a lab's booth certificate: pinned by fingerprint, not trusted for its dates
PLAINTEXT_ACK_FLAG = "--accept-plaintext-risk"


class TlsConfigError(ValueError):
    """The TLS settings contradict each other or a certificate file is unusable."""


@dataclass(frozen=True)
class TlsPlan:
    """What the server will do: ``enabled`` with ``cert``/``key``, or plain text (and why)."""

    enabled: bool
    cert: Path | None = None
    key: Path | None = None
    generated: bool = False  # the certificate was made (now or earlier) by Liaison for this data folder
    reason: str = ""

    @property
    def fingerprint(self) -> str | None:
        """The served certificate's SHA-256 fingerprint (None without TLS), for clients to pin."""
        return certificate_fingerprint(self.cert.read_bytes()) if self.enabled and self.cert else None

    def context(self) -> ssl.SSLContext | None:
        """An ``ssl.SSLContext`` for the server socket, or None for plain text."""
        if not self.enabled:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(f"cannot use the certificate {self.cert} with the key {self.key}: {exc}") from exc
        return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan_tls(host: str, data_dir: Path, *, tls: bool | None = None, cert: Path | None = None,
             key: Path | None = None, accept_plaintext: bool = False) -> TlsPlan:
    """Decide TLS for a server binding ``host``; generates the certificate if one is needed and absent.

    ``tls`` is None (decide by host), True (``--tls``) or False (``--no-tls``).
    Raises :class:`TlsConfigError` for contradictions: a certificate without
    its key, ``--no-tls`` with a certificate, or plain text off loopback
    without ``accept_plaintext``.
    """
    if (cert is None) != (key is None):
        raise TlsConfigError("--tls-cert and --tls-key go together: give both or neither")
    if cert is not None:
        if tls is False:
            raise TlsConfigError("--no-tls contradicts --tls-cert/--tls-key")
        for path in (cert, key):
            if not Path(path).is_file():
                raise TlsConfigError(f"no such file: {path}")
        return TlsPlan(True, Path(cert).resolve(), Path(key).resolve(), reason="certificate given")
    if tls is False:
        if not is_loopback(host) and not accept_plaintext:
            raise TlsConfigError(
                f"--no-tls on {host} would send the token, every command and every data row across the "
                f"network in clear text; add {PLAINTEXT_ACK_FLAG} if that is really what you want")
        return TlsPlan(False, reason="--no-tls")
    if tls is None and is_loopback(host):
        return TlsPlan(False, reason="loopback")
    cert_path, key_path = ensure_self_signed(Path(data_dir) / "tls", host)
    return TlsPlan(True, cert_path, key_path, generated=True,
                   reason="--tls" if tls else "not loopback: encrypted by default")


# --- the generated certificate ------------------------------------------------------------

def host_names_and_addresses(host: str) -> tuple[list[str], list[str]]:
    """The names and addresses clients may use for this machine (for the certificate's SANs)."""
    names = {"localhost"}
    addresses = {"127.0.0.1", "::1"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name)
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(info[4][0].split("%", 1)[0])
    except OSError:  # no resolvable host name: the explicit ones still go in
        pass
    if host not in ("0.0.0.0", "::", ""):
        try:
            ipaddress.ip_address(host)
            addresses.add(host)
        except ValueError:
            names.add(host)
    return sorted(names), sorted(addresses)


def ensure_self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """``folder/cert.pem`` and ``folder/key.pem``: reused if present, else generated (key 0600)."""
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    names, addresses = host_names_and_addresses(host)
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Liaison on {socket.gethostname()}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Liaison (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # Its own authority, so it can be installed as a trusted root on the lab's laptops.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key_bytes = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    # The key is created 0600 (never world-readable, not even for an instant), then the certificate.
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    os.chmod(tmp_key, 0o600)
    tmp_key.replace(key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    tmp_cert.replace(cert_path)
    log.info("generated a self-signed certificate for %s in %s", ", ".join(names + addresses), folder)
    return cert_path, key_path


def certificate_fingerprint(pem_or_der: bytes) -> str:
    """``SHA256:AB:CD:...``: the SHA-256 of the DER certificate, as browsers and ``openssl x509`` show it."""
    der = ssl.PEM_cert_to_DER_cert(pem_or_der.decode("ascii")) if pem_or_der.lstrip().startswith(b"-----") \
        else pem_or_der
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def spki_hash(pem: bytes) -> str:
    """Base64 SHA-256 of the certificate's public key (Chromium's ``--ignore-certificate-errors-spki-list``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public_key = x509.load_pem_x509_certificate(pem).public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
