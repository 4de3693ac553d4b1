"""Real servers for the `nurture doctor` tests: a DNS server of the tests' own (dnslib, UDP
and TCP on a free port) serving zones the test writes, a certificate authority of its own
(cryptography) for the relay's and the web's certificates, a server that accepts and never
answers (a dead relay or DNS), and the web app in a thread."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver
from werkzeug.serving import make_server

from nurture.doctor.lookup import Lookup, resolver_for
from tests.support import free_port

QUIET = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


def txt(value: str) -> str:
    """A TXT value as a zone file writes it: quoted strings of at most 255 bytes."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.zone = ZoneResolver("")

    def resolve(self, request: Any, handler: Any) -> Any:
        return self.zone.resolve(request, handler)


class DnsServer:
    """Answers from the zone the test sets (`server.set(...)`), on 127.0.0.1:port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._zone = _Zone()
        self._servers = [
            DNSServer(self._zone, address="127.0.0.1", port=self.port, tcp=tcp, logger=QUIET)
            for tcp in (False, True)
        ]

    def set(self, *records: str) -> None:
        """Zone-file lines, e.g. 'example.org. 60 IN TXT "v=spf1 -all"'."""
        self._zone.zone = ZoneResolver("\n".join(records))

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lookup(self, timeout: float = 2.0) -> Lookup:
        return Lookup(resolver_for(self.nameserver, timeout))

    def __enter__(self) -> DnsServer:
        for server in self._servers:
            server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


@contextmanager
def silent_server(kind: int = socket.SOCK_STREAM) -> Iterator[int]:
    """A port that takes connections (or datagrams) and never says a word."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@dataclass
class Issued:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


class TestCA:
    """A certificate authority of the test's own; `cafile` is what a client trusts."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("nurture test CA"))
            .issuer_name(_name("nurture test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cafile = folder / "ca.pem"
        self.cafile.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, *names: str, days: int = 20, self_signed: bool = False) -> Issued:
        """A server certificate for `names` (host names or IP addresses), signed by this CA
        or, with self_signed, by its own key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(_name(names[0]) if self_signed else self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(_san(list(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        cert = builder.sign(key if self_signed else self.key, hashes.SHA256())
        stem = self.folder / f"{names[0]}-{'self' if self_signed else 'ca'}-{days}"
        issued = Issued(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


@contextmanager
def web_server(app: Any, tls: Issued | None = None) -> Iterator[str]:
    """`app` served on a free port in a thread; yields its base URL."""
    port = free_port()
    context = tls.server_context() if tls else None
    server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
