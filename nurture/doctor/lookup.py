"""DNS lookups for the doctor, over one dnspython resolver that the caller chooses: the
system's, a name server the operator names (`--nameserver`, e.g. the DNS host's own, right
after a change), or a test's server on a port of its own.

"Nothing there" (NXDOMAIN, no record of that type) is an empty answer; a server that does
not answer, or answers SERVFAIL, raises DnsTrouble: the record may well be fine, we only
cannot tell. After one timeout every later lookup fails at once, so a dead resolver costs
one timeout, not one per record.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from nurture.errors import NurtureError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DnsTrouble(Exception):
    """The DNS did not give an answer (timeout, SERVFAIL): the record is unknown."""


def resolver_for(nameserver: str | None, timeout: float) -> dns.resolver.Resolver:
    """The system's resolver, or one asking only `nameserver` ("192.0.2.53", "ns:5353",
    "[2001:db8::53]:53"); every query gives up after `timeout` seconds."""
    if nameserver is None:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise NurtureError(
                "this machine has no DNS resolver set up (/etc/resolv.conf): name one with "
                "--nameserver, e.g. --nameserver 1.1.1.1"
            ) from None
    else:
        host, port = _host_port(nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def _host_port(text: str) -> tuple[str, int]:
    host, port = text.strip(), 53
    if host.startswith("["):  # [v6]:port
        host, _, rest = host[1:].partition("]")
        port = int(rest.removeprefix(":") or 53)
    elif host.count(":") == 1:
        host, _, number = host.partition(":")
        port = int(number)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (with an optional :port)") from None
    return host, port


@dataclass
class Lookup:
    resolver: dns.resolver.Resolver
    dead: str | None = field(default=None)

    def _answer(self, name: str, rtype: str) -> list[object]:
        if self.dead:
            raise DnsTrouble(self.dead)
        try:
            return list(self.resolver.resolve(name, rtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            self.dead = f"DNS did not answer within {self.resolver.lifetime:g} s"
            raise DnsTrouble(self.dead) from None
        except dns.resolver.NoNameservers:
            raise DnsTrouble(f"DNS failed to look up {name} (SERVFAIL)") from None
        except dns.exception.DNSException as exc:
            raise DnsTrouble(f"DNS lookup of {name} failed ({type(exc).__name__})") from None

    def txt(self, name: str) -> list[str]:
        """Every TXT record at `name`, each one's strings joined (a long DKIM key is split
        into 255-byte strings; they make one value)."""
        records = []
        for rdata in self._answer(name, "TXT"):
            parts = getattr(rdata, "strings", ())
            records.append(b"".join(parts).decode("utf-8", "replace"))
        return records

    def addresses(self, host: str, *, v4: bool = True, v6: bool = True) -> list[IPAddress]:
        """The A and/or AAAA addresses of `host` (an IP literal is its own address)."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        found: list[IPAddress] = []
        for rtype, wanted in (("A", v4), ("AAAA", v6)):
            if wanted:
                found += [ipaddress.ip_address(str(r)) for r in self._answer(host, rtype)]
        return found

    def mx(self, domain: str) -> list[str]:
        """The mail exchangers of `domain`, most preferred first."""
        records = sorted(self._answer(domain, "MX"), key=lambda r: getattr(r, "preference", 0))
        return [str(getattr(r, "exchange", "")).rstrip(".") for r in records]
