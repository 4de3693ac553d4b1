"""The SPF evaluator of `nurture doctor` (RFC 7208 check_host) against a real DNS server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from nurture.doctor.lookup import Lookup, resolver_for
from nurture.doctor.spf import check_host
from tests.doctor_support import DnsServer, silent_server

ZONE = [
    'ip.test. 60 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"',
    'soft.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 ~all"',
    'open.test. 60 IN TXT "v=spf1 ?all"',
    'inc.test. 60 IN TXT "v=spf1 include:_spf.provider.test -all"',
    '_spf.provider.test. 60 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"',
    'badinc.test. 60 IN TXT "v=spf1 include:nothing.test -all"',
    'redir.test. 60 IN TXT "v=spf1 redirect=_spf.provider.test"',
    'a.test. 60 IN TXT "v=spf1 a a:host.test/30 -all"',
    "a.test. 60 IN A 203.0.113.10",
    "host.test. 60 IN A 203.0.113.20",
    'mx.test. 60 IN TXT "v=spf1 mx -all"',
    "mx.test. 60 IN MX 10 mail.mx.test.",
    "mail.mx.test. 60 IN A 203.0.113.30",
    "mail.mx.test. 60 IN AAAA 2001:db8:1::30",
    'exists.test. 60 IN TXT "v=spf1 exists:%{i}.allow.test -all"',
    "192.0.2.77.allow.test. 60 IN A 127.0.0.2",
    'macro.test. 60 IN TXT "v=spf1 include:%{d2}.%{l}.users.test -all"',
    'macro.test.bounces.users.test. 60 IN TXT "v=spf1 ip4:192.0.2.88 -all"',
    'two.test. 60 IN TXT "v=spf1 -all"',
    'two.test. 60 IN TXT "v=spf1 +all"',
    'broken.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 bogus:x -all"',
    'notspf.test. 60 IN TXT "google-site-verification=abc"',
    'voids.test. 60 IN TXT "v=spf1 a:n1.test a:n2.test a:n3.test ip4:192.0.2.1 -all"',
    # A chain of eleven includes: one DNS term too many.
    *(f'c{i}.test. 60 IN TXT "v=spf1 include:c{i + 1}.test -all"' for i in range(11)),
    'c11.test. 60 IN TXT "v=spf1 +all"',
    'loop.test. 60 IN TXT "v=spf1 include:loop.test -all"',
]


@pytest.fixture(scope="module")
def lookup() -> Iterator[Lookup]:
    with DnsServer() as server:
        server.set(*ZONE)
        yield server.lookup()


def result(lookup: Lookup, ip: str, domain: str, sender: str = "") -> str:
    return check_host(lookup, ip_address(ip), domain, sender or f"bounces@{domain}").result


@pytest.mark.parametrize(
    ("ip", "domain", "expected"),
    [
        ("192.0.2.5", "ip.test", "pass"),
        ("2001:db8::25", "ip.test", "pass"),
        ("198.51.100.5", "ip.test", "fail"),
        ("192.0.2.1", "soft.test", "pass"),
        ("192.0.2.2", "soft.test", "softfail"),
        ("192.0.2.2", "open.test", "neutral"),
        ("198.51.100.9", "inc.test", "pass"),
        ("192.0.2.9", "inc.test", "fail"),
        ("198.51.100.9", "redir.test", "pass"),
        ("192.0.2.9", "redir.test", "fail"),
        ("203.0.113.10", "a.test", "pass"),
        ("203.0.113.22", "a.test", "pass"),  # host.test/30
        ("203.0.113.24", "a.test", "fail"),
        ("203.0.113.30", "mx.test", "pass"),
        ("2001:db8:1::30", "mx.test", "pass"),
        ("203.0.113.31", "mx.test", "fail"),
        ("192.0.2.77", "exists.test", "pass"),
        ("192.0.2.78", "exists.test", "fail"),
        ("192.0.2.1", "nowhere.test", "none"),
        ("192.0.2.1", "notspf.test", "none"),
    ],
)
def test_mechanisms(lookup: Lookup, ip: str, domain: str, expected: str) -> None:
    assert result(lookup, ip, domain) == expected


def test_macros_expand_domain_and_local_part(lookup: Lookup) -> None:
    assert result(lookup, "192.0.2.88", "macro.test", "bounces@macro.test") == "pass"
    assert result(lookup, "192.0.2.89", "macro.test", "bounces@macro.test") == "fail"


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("two.test", "2 SPF records"),
        ("broken.test", "unknown term"),
        ("badinc.test", "include:nothing.test names no SPF record"),
        ("c0.test", "more than 10 DNS lookups"),
        ("loop.test", "more than 10 DNS lookups"),
        ("voids.test", "more than 2 lookups found nothing"),
    ],
)
def test_broken_records_are_permerror(lookup: Lookup, domain: str, why: str) -> None:
    verdict = check_host(lookup, ip_address("192.0.2.1"), domain, f"b@{domain}")
    assert (verdict.result, why in verdict.reason) == ("permerror", True), verdict


def test_ten_includes_are_still_allowed(lookup: Lookup) -> None:
    # c1 .. c11: exactly ten includes, the last one's +all matching.
    assert result(lookup, "192.0.2.1", "c1.test") == "pass"


def test_a_dead_dns_is_temperror_within_the_timeout() -> None:
    with silent_server(socket.SOCK_DGRAM) as port:
        lookup = Lookup(resolver_for(f"127.0.0.1:{port}", 0.5))
        started = time.monotonic()
        verdict = check_host(lookup, ip_address("192.0.2.1"), "ip.test", "b@ip.test")
        # A second lookup on the dead resolver fails at once instead of waiting again.
        again = check_host(lookup, ip_address("192.0.2.1"), "inc.test", "b@inc.test")
    assert verdict.result == again.result == "temperror"
    assert "did not answer within 0.5 s" in verdict.reason
    assert time.monotonic() - started < 3
