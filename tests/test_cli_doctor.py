"""`nurture doctor` as the operator runs it: a good setup (DNS with SPF, DKIM and DMARC, a
relay with STARTTLS, the web app over https) prints only ok lines and exits 0; a broken one
says what to change and exits 1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from tests.cli_helpers import run, sequence_copy
from tests.conftest import reload_runtime
from tests.doctor_support import DnsServer, TestCA, txt, web_server
from tests.support import SMTPServer

STRONG = "b7f0c2e19a4d8e6f3a5b1c7d9e2f4a6b"


@dataclass
class Setup:
    dns: DnsServer
    public_key: str

    def zone(self, *, spf: str = "ip4:127.0.0.1 -all", dmarc: bool = True) -> None:
        dkim = txt(f"v=DKIM1; k=rsa; p={self.public_key}")
        records = [
            f'example.org. 60 IN TXT "v=spf1 {spf}"',
            f"nurture._domainkey.example.org. 60 IN TXT {dkim}",
        ]
        if dmarc:
            records.append('_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject"')
        self.dns.set(*records)

    def doctor(self, *args: str, terminal: bool = False):  # type: ignore[no-untyped-def]
        return run("doctor", "--nameserver", self.dns.nameserver, *args, terminal=terminal)


@pytest.fixture
def setup(app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    ca = TestCA(tmp_path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tls = ca.issue("127.0.0.1")
    with (
        DnsServer() as dns,
        SMTPServer(tls_context=tls.server_context()) as relay,
        web_server(app, tls=tls) as base,
    ):
        for name, value in {
            "NURTURE_MAIL_URL": f"smtp://user:s3cret-pass@127.0.0.1:{relay.port}?starttls=true",
            "NURTURE_BASE_URL": base,
            "NURTURE_SECRET_KEY": STRONG,
            "NURTURE_DKIM_SELECTOR": "nurture",
            "NURTURE_DKIM_PRIVATE_KEY": str(pem),
            # The relay's and the web's certificates come from the test's CA (OpenSSL reads it).
            "SSL_CERT_FILE": str(ca.cafile),
        }.items():
            monkeypatch.setenv(name, value)
        reload_runtime()
        found = Setup(dns, base64.b64encode(public).decode())
        found.zone()
        yield found


def test_a_good_setup_is_all_ok(setup: Setup) -> None:
    ran = setup.doctor()
    assert ran.code == 0, (ran.out, ran.err)
    lines = ran.out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "spf"],
        ["ok", "dkim"],
        ["ok", "dmarc"],
        ["ok", "relay"],
        ["ok", "base-url"],
        ["ok", "one-click"],
        ["ok", "keys"],
        ["ok", "keys"],
    ], ran.out
    assert "s3cret" not in ran.out + ran.err  # the relay's password is never shown


def test_json_is_a_list_of_checks(setup: Setup) -> None:
    ran = setup.doctor("--json")
    assert ran.code == 0
    rows = ran.json()
    assert {r["check"] for r in rows} == {
        "spf", "dkim", "dmarc", "relay", "base-url", "one-click", "keys",
    }  # fmt: skip
    assert all(set(r) == {"status", "check", "subject", "message"} for r in rows)
    assert {r["status"] for r in rows} == {"ok"}


def test_a_broken_setup_says_what_to_change_and_exits_1(setup: Setup) -> None:
    setup.zone(spf="ip4:192.0.2.1 -all", dmarc=False)
    ran = setup.doctor()
    assert ran.code == 1
    assert "fail  spf        example.org: does not allow the relay 127.0.0.1" in ran.out
    assert "fail  dmarc      example.org: no DMARC record" in ran.out
    assert ran.err.strip().splitlines() == [
        "Error: 2 of 8 checks failed: change what their lines say, then run nurture doctor again"
    ]
    assert "Traceback" not in ran.err
    rows = setup.doctor("--json")
    assert rows.code == 1 and [r["check"] for r in rows.json() if r["status"] == "fail"] == [
        "spf",
        "dmarc",
    ]


def test_on_a_terminal_the_same_lines(setup: Setup) -> None:
    ran = setup.doctor(terminal=True)
    assert ran.code == 0 and ran.out.splitlines()[0].startswith("ok    spf")


def test_every_sequence_domain_is_checked_discreet_ones_too(setup: Setup, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path, "quick")
    spec = yaml.safe_load((folder / "sequence.yaml").read_text())
    spec.update(
        slug="quiet",
        **{"from": {"name": "Weekly Notes", "email": "notes@quiet.example"}},
        discreet={"enabled": True, "from_name": "Weekly Notes"},
    )
    (folder / "sequence.yaml").write_text(yaml.safe_dump(spec))
    assert run("sequences", "apply", str(folder)).code == 0
    ran = setup.doctor("--json")
    checked = {(r["check"], r["subject"]) for r in ran.json()}
    assert {("dmarc", "example.org"), ("dmarc", "quiet.example")} <= checked
    assert ("spf", "quiet.example") in checked


def test_a_bad_nameserver_is_a_usage_error(setup: Setup) -> None:
    ran = run("doctor", "--nameserver", "not-an-ip")
    assert ran.code == 2 and "--nameserver" in ran.err


def test_without_sequences_it_says_so(db: str, settings_env: dict[str, str]) -> None:
    ran = run("doctor", "--timeout", "1", "--json")
    rows = {r["check"]: r for r in ran.json()}
    assert (
        rows["sequences"]["status"] == "warn" and "sequences apply" in rows["sequences"]["message"]
    )
    assert rows["relay"]["status"] == "warn"  # memory:// is no relay
