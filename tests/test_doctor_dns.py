"""`nurture doctor`'s DNS checks (SPF, DKIM, DMARC) against a real DNS server of the test's
own, with zones for a good setup and for each way it goes wrong."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nurture.config import load_settings
from nurture.doctor.checks import Probe, domain_checks
from nurture.doctor.relay import relay_of
from nurture.doctor.report import Finding, Status
from tests.doctor_support import DnsServer, txt

RELAY = "smtp://127.0.0.1:2525?starttls=true"
SPF_OK = 'example.org. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"'
DMARC_OK = '_dmarc.example.org. 60 IN TXT "v=DMARC1; p=quarantine; rua=mailto:d@example.org"'


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    dns_server.set()  # each test writes its own zone
    return dns_server


def _key(folder: Path, bits: int) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path = folder / f"dkim-{bits}-{len(list(folder.iterdir()))}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("dkim")
    return {"good": _key(folder, 2048), "other": _key(folder, 2048), "short": _key(folder, 1024)}


def dkim_record(public: str, selector: str = "nurture", extra: str = "") -> str:
    return (
        f"{selector}._domainkey.example.org. 60 IN TXT {txt(f'v=DKIM1; k=rsa;{extra} p={public}')}"
    )


def check(
    dns: DnsServer, *zone: str, senders: tuple[str, ...] = ("hello@example.org",), **settings: str
) -> dict[str, Finding]:
    dns.set(*zone)
    loaded = load_settings(**{"mail_url": RELAY, **settings})
    probe = Probe(dns.lookup(), timeout=2)
    found = domain_checks(loaded, probe, list(senders), relay_of(loaded.mail_url))
    return {f.name: f for f in found}


def signed(keys: dict[str, tuple[Path, str]], which: str = "good") -> dict[str, str]:
    return {"dkim_selector": "nurture", "dkim_private_key": str(keys[which][0])}


# SPF


def test_spf_that_allows_the_relay_is_ok(dns: DnsServer) -> None:
    spf = check(dns, SPF_OK, DMARC_OK)["spf example.org"]
    assert spf.status == Status.OK and "127.0.0.1" in spf.message


def test_missing_spf_fails_and_says_what_to_publish(dns: DnsServer) -> None:
    spf = check(dns, DMARC_OK)["spf example.org"]
    assert spf.status == Status.FAIL
    assert "no SPF record" in spf.message and '"v=spf1 include:' in spf.message


def test_spf_that_does_not_allow_the_relay_fails(dns: DnsServer) -> None:
    zone = ['example.org. 60 IN TXT "v=spf1 ip4:192.0.2.1 ~all"', DMARC_OK]
    spf = check(dns, *zone)["spf example.org"]
    assert spf.status == Status.FAIL
    assert "does not allow the relay 127.0.0.1" in spf.message and "include:" in spf.message


def test_a_relay_by_name_is_looked_up_and_an_include_allows_it(dns: DnsServer) -> None:
    zone = [
        'example.org. 60 IN TXT "v=spf1 include:_spf.provider.example -all"',
        '_spf.provider.example. 60 IN TXT "v=spf1 ip4:127.0.0.0/29 -all"',
        "smtp.provider.example. 60 IN A 127.0.0.5",
        DMARC_OK,
    ]
    spf = check(dns, *zone, mail_url="smtp://smtp.provider.example:587?starttls=true")
    assert spf["spf example.org"].status == Status.OK
    assert "smtp.provider.example (127.0.0.5)" in spf["spf example.org"].message


def test_a_broken_spf_record_fails(dns: DnsServer) -> None:
    zone = ['example.org. 60 IN TXT "v=spf1 include:gone.example -all"', DMARC_OK]
    spf = check(dns, *zone)["spf example.org"]
    assert spf.status == Status.FAIL and "broken" in spf.message and "gone.example" in spf.message


def test_two_spf_records_fail(dns: DnsServer) -> None:
    zone = [SPF_OK, 'example.org. 60 IN TXT "v=spf1 include:other.example ~all"', DMARC_OK]
    spf = check(dns, *zone)["spf example.org"]
    assert spf.status == Status.FAIL and "merge them" in spf.message


def test_spf_is_checked_for_the_bounce_address_domain(dns: DnsServer) -> None:
    zone = ['mail.example.org. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"', DMARC_OK]
    found = check(dns, *zone, bounce_address="bounces@mail.example.org")
    assert found["spf mail.example.org"].status == Status.OK
    assert "spf example.org" not in found  # SPF is the envelope's, not the From header's


def test_no_relay_is_a_warning_not_a_failure(dns: DnsServer, tmp_path: Path) -> None:
    found = check(dns, SPF_OK, DMARC_OK, mail_url=f"file://{tmp_path}")
    assert found["spf example.org"].status == Status.WARN
    assert "no relay" in found["spf example.org"].message


# DKIM


def test_dkim_key_matching_the_private_key_is_ok(dns: DnsServer, keys: dict) -> None:
    found = check(dns, SPF_OK, DMARC_OK, dkim_record(keys["good"][1]), **signed(keys))
    assert found["dkim example.org"].status == Status.OK
    assert "nurture._domainkey.example.org matches" in found["dkim example.org"].message


def test_dkim_key_mismatch_fails_and_gives_the_record(dns: DnsServer, keys: dict) -> None:
    found = check(dns, SPF_OK, DMARC_OK, dkim_record(keys["other"][1]), **signed(keys))
    dkim = found["dkim example.org"]
    assert dkim.status == Status.FAIL and "not the public half" in dkim.message
    assert f"p={keys['good'][1]}" in dkim.message  # what to publish instead


def test_missing_dkim_record_fails(dns: DnsServer, keys: dict) -> None:
    dkim = check(dns, SPF_OK, DMARC_OK, **signed(keys))["dkim example.org"]
    assert dkim.status == Status.FAIL and "no DKIM key at nurture._domainkey" in dkim.message


def test_revoked_dkim_record_fails(dns: DnsServer, keys: dict) -> None:
    dkim = check(dns, SPF_OK, DMARC_OK, dkim_record(""), **signed(keys))["dkim example.org"]
    assert dkim.status == Status.FAIL and "revoked" in dkim.message


def test_unsigned_mail_is_a_warning(dns: DnsServer) -> None:
    dkim = check(dns, SPF_OK, DMARC_OK)["dkim"]
    assert dkim.status == Status.WARN and "Gmail and Yahoo require DKIM" in dkim.message


def test_half_a_dkim_setting_fails(dns: DnsServer) -> None:
    dkim = check(dns, SPF_OK, DMARC_OK, dkim_selector="nurture")["dkim"]
    assert dkim.status == Status.FAIL and "NURTURE_DKIM_PRIVATE_KEY is not set" in dkim.message


def test_an_unreadable_key_fails_in_one_line(dns: DnsServer, tmp_path: Path) -> None:
    found = check(
        dns,
        SPF_OK,
        DMARC_OK,
        dkim_selector="nurture",
        dkim_private_key=str(tmp_path / "missing.pem"),
    )
    assert found["dkim"].status == Status.FAIL and "cannot read" in found["dkim"].message
    # Signing is asked for but cannot happen: DMARC cannot count on DKIM.
    assert found["dmarc example.org"].status == Status.OK  # SPF still aligns


def test_a_short_key_is_a_warning_and_a_test_key_too(dns: DnsServer, keys: dict) -> None:
    found = check(dns, SPF_OK, DMARC_OK, dkim_record(keys["short"][1]), **signed(keys, "short"))
    assert found["dkim example.org"].status == Status.WARN
    assert "1024-bit" in found["dkim example.org"].message
    record = dkim_record(keys["good"][1], extra=" t=y;")
    found = check(dns, SPF_OK, DMARC_OK, record, **signed(keys))
    assert (
        found["dkim example.org"].status == Status.WARN
        and "t=y" in found["dkim example.org"].message
    )


# DMARC


def test_dmarc_aligned_through_dkim_and_spf_is_ok(dns: DnsServer, keys: dict) -> None:
    found = check(dns, SPF_OK, DMARC_OK, dkim_record(keys["good"][1]), **signed(keys))
    dmarc = found["dmarc example.org"]
    assert dmarc.status == Status.OK
    assert "p=quarantine" in dmarc.message and "through DKIM and SPF" in dmarc.message


def test_missing_dmarc_fails_and_says_what_to_publish(dns: DnsServer) -> None:
    dmarc = check(dns, SPF_OK)["dmarc example.org"]
    assert dmarc.status == Status.FAIL
    assert '_dmarc.example.org: "v=DMARC1; p=none;' in dmarc.message


def test_dmarc_of_the_organisational_domain_applies(dns: DnsServer) -> None:
    zone = [
        'news.example.org. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"',
        '_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject; sp=none"',
    ]
    dmarc = check(dns, *zone, senders=("hello@news.example.org",))["dmarc news.example.org"]
    assert dmarc.status == Status.OK
    assert "p=none at _dmarc.example.org" in dmarc.message  # sp= for a subdomain


def test_dmarc_without_a_valid_policy_fails(dns: DnsServer) -> None:
    zone = [SPF_OK, '_dmarc.example.org. 60 IN TXT "v=DMARC1; rua=mailto:d@example.org"']
    dmarc = check(dns, *zone)["dmarc example.org"]
    assert dmarc.status == Status.FAIL and "no valid p=" in dmarc.message


def test_two_dmarc_records_fail(dns: DnsServer) -> None:
    zone = [SPF_OK, DMARC_OK, '_dmarc.example.org. 60 IN TXT "v=DMARC1; p=none"']
    assert check(dns, *zone)["dmarc example.org"].status == Status.FAIL


def test_a_bounce_subdomain_aligns_relaxed_but_not_strict(dns: DnsServer) -> None:
    spf = 'bounces.example.org. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"'
    relaxed = check(dns, spf, DMARC_OK, bounce_address="b@bounces.example.org")
    assert relaxed["dmarc example.org"].status == Status.OK
    assert "through SPF" in relaxed["dmarc example.org"].message
    strict = '_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject; aspf=s"'
    found = check(dns, spf, strict, bounce_address="b@bounces.example.org")
    dmarc = found["dmarc example.org"]
    # Unsigned by nurture: a provider may still sign as the domain, so only a warning.
    assert dmarc.status == Status.WARN
    assert "does not align with example.org (strict (aspf=s))" in dmarc.message
    assert "provider signs DKIM" in dmarc.message


def test_dmarc_fails_when_neither_dkim_nor_spf_can_align(dns: DnsServer, keys: dict) -> None:
    zone = [
        'other.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"',
        DMARC_OK,
        dkim_record(keys["other"][1]),  # the wrong key: signatures will not verify
    ]
    found = check(dns, *zone, bounce_address="b@other.example", **signed(keys))
    dmarc = found["dmarc example.org"]
    assert dmarc.status == Status.FAIL
    assert "DKIM signature will not verify" in dmarc.message
    assert "other.example does not align" in dmarc.message


def test_two_senders_at_one_domain_give_one_set_of_lines(dns: DnsServer) -> None:
    dns.set(SPF_OK, DMARC_OK)
    loaded = load_settings(mail_url=RELAY)
    senders = ["hello@example.org", "notes@example.org"]
    found = domain_checks(loaded, Probe(dns.lookup()), senders, relay_of(RELAY))
    assert [f.name for f in found] == ["dkim", "spf example.org", "dmarc example.org"]


def test_a_dead_dns_warns_quickly(keys: dict) -> None:
    import socket
    import time

    from nurture.doctor.lookup import Lookup, resolver_for
    from tests.doctor_support import silent_server

    with silent_server(socket.SOCK_DGRAM) as port:
        loaded = load_settings(mail_url=RELAY, **signed(keys))
        probe = Probe(Lookup(resolver_for(f"127.0.0.1:{port}", 0.5)), timeout=0.5)
        started = time.monotonic()
        found = domain_checks(loaded, probe, ["hello@example.org"], relay_of(RELAY))
    assert {f.status for f in found} == {Status.WARN}
    assert all("could not check" in f.message for f in found)
    assert time.monotonic() - started < 3
