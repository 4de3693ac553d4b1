"""Does a domain's SPF record let the relay send for it? A careful, small check_host()
(RFC 7208 section 4) over the doctor's own resolver.

Why not pyspf: it reads DNS through a module-wide function and dnspython's default
resolver, so pointing it at another name server (the operator's `--nameserver`, a test's
server) would mean replacing a global for the whole process. This evaluator does what the
doctor needs: ip4, ip6, a, mx, include, exists, redirect and all, the macros of section 7,
the limit of 10 DNS-querying terms and of 2 lookups that find nothing (section 4.6.4). ptr
(which the RFC says not to use) never matches here; exp= only words a rejection and is
ignored.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote

from nurture.doctor.lookup import DnsTrouble, IPAddress, Lookup

MAX_DNS_TERMS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_NAMES = 10
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_VERSION = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_CIDRS = re.compile(r"^(.*?)(?:/(\d+))?(?://(\d+))?$")
T = TypeVar("T")
_MACRO = re.compile(r"%(?:%|_|-|\{([a-z])(\d*)(r?)([.\-+,/_=]*)\})", re.IGNORECASE)


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    reason: str  # the term that decided, or what is wrong with the record


class _PermError(Exception):
    pass


@dataclass(frozen=True)
class _Term:
    text: str
    qualifier: str
    mechanism: str
    spec: str  # the domain-spec (a, mx, include, exists) or the network (ip4, ip6)
    cidr4: int
    cidr6: int


def spf_records(lookup: Lookup, domain: str) -> list[str]:
    """The SPF records published at `domain` (a domain may have only one)."""
    return [r for r in lookup.txt(domain) if _VERSION.match(r)]


def check_host(lookup: Lookup, ip: IPAddress, domain: str, sender: str) -> SpfResult:
    """What a receiver would conclude about mail from `sender` (MAIL FROM), whose SPF domain
    is `domain`, arriving from `ip`."""
    evaluation = _Evaluation(lookup, ip, sender)
    try:
        return evaluation.check(domain)
    except _PermError as exc:
        return SpfResult("permerror", str(exc))
    except DnsTrouble as exc:
        return SpfResult("temperror", str(exc))


def _parse(term: str) -> _Term:
    qualifier = term[0] if term[0] in QUALIFIERS else "+"
    rest = term[1:] if term[0] in QUALIFIERS else term
    cut = min((i for i in (rest.find(":"), rest.find("/")) if i >= 0), default=len(rest))
    name, tail = rest[:cut].lower(), rest[cut:]
    if name not in MECHANISMS:
        raise _PermError(f"unknown term {term!r}")
    spec = tail[1:] if tail.startswith(":") else tail
    if name in {"ip4", "ip6"}:
        try:
            network = ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise _PermError(f"{term!r} is not a valid address or network") from None
        if network.version != int(name[-1]):
            raise _PermError(f"{term!r} is not an IPv{name[-1]} network")
        return _Term(term, qualifier, name, spec, 32, 128)
    match = _CIDRS.match(spec)
    assert match is not None  # every string matches: all its groups are optional
    domain, c4, c6 = match.group(1), int(match.group(2) or 32), int(match.group(3) or 128)
    needs_domain = name in {"include", "exists"}
    if c4 > 32 or c6 > 128 or (name == "all" and tail) or (needs_domain and not domain):
        raise _PermError(f"{term!r} is not a valid term")
    return _Term(term, qualifier, name, domain, c4, c6)


@dataclass
class _Evaluation:
    lookup: Lookup
    ip: IPAddress
    sender: str
    dns_terms: int = 0
    voids: int = 0
    seen: list[str] = field(default_factory=list)

    def check(self, domain: str) -> SpfResult:
        records = spf_records(self.lookup, domain)
        if not records:
            return SpfResult("none", f"{domain} has no SPF record")
        if len(records) > 1:
            raise _PermError(f"{domain} has {len(records)} SPF records; it may have only one")
        terms, redirect = self._terms(records[0], domain)
        for term in terms:
            if self._matches(term, domain):
                return SpfResult(QUALIFIERS[term.qualifier], f"{term.text} in {domain}'s record")
        if redirect is None:
            return SpfResult("neutral", f"nothing in {domain}'s record matches")
        self._count_dns_term()
        target = self._expand(redirect, domain)
        result = self.check(target)
        if result.result == "none":
            raise _PermError(f"redirect={target} in {domain}'s record names no SPF record")
        return result

    def _terms(self, record: str, domain: str) -> tuple[list[_Term], str | None]:
        # Every term is read before any is evaluated: a syntax error anywhere is permerror.
        terms, redirect = [], None
        for text in record.split()[1:]:
            modifier = _MODIFIER.match(text)
            if modifier is None:
                terms.append(_parse(text))
            elif modifier.group(1).lower() == "redirect":
                if redirect is not None:
                    raise _PermError(f"{domain}'s record has two redirect= modifiers")
                redirect = modifier.group(2)
        # With an `all`, a redirect is never reached (section 6.1).
        if any(t.mechanism == "all" for t in terms):
            redirect = None
        return terms, redirect

    def _matches(self, term: _Term, domain: str) -> bool:
        kind = term.mechanism
        if kind == "all":
            return True
        if kind in {"ip4", "ip6"}:
            return self.ip in ipaddress.ip_network(term.spec, strict=False)
        self._count_dns_term()
        target = self._expand(term.spec, domain) if term.spec else domain
        if kind == "include":
            return self._include(target)
        if kind == "exists":
            return bool(self._void_if_empty(self.lookup.addresses(target, v6=False)))
        if kind == "a":
            return self._in_any(self._void_if_empty(self._addresses(target)), term)
        if kind == "mx":
            return self._mx(target, term)
        return False  # ptr: slow, unreliable and discouraged (section 5.5); never a match

    def _include(self, target: str) -> bool:
        result = self.check(target)
        if result.result == "none":
            raise _PermError(f"include:{target} names no SPF record")
        return result.result == "pass"

    def _mx(self, target: str, term: _Term) -> bool:
        names = self._void_if_empty(self.lookup.mx(target))
        if len(names) > MAX_MX_NAMES:
            raise _PermError(f"{target} has more than {MAX_MX_NAMES} MX records")
        return any(self._in_any(self._addresses(name), term) for name in names)

    def _addresses(self, host: str) -> list[IPAddress]:
        return self.lookup.addresses(host, v4=self.ip.version == 4, v6=self.ip.version == 6)

    def _in_any(self, addresses: list[IPAddress], term: _Term) -> bool:
        cidr = term.cidr4 if self.ip.version == 4 else term.cidr6
        return any(self.ip in ipaddress.ip_network(f"{a}/{cidr}", strict=False) for a in addresses)

    def _count_dns_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > MAX_DNS_TERMS:
            raise _PermError(
                f"more than {MAX_DNS_TERMS} DNS lookups (include, a, mx, exists, redirect): "
                "receivers stop there and treat the record as broken"
            )

    def _void_if_empty(self, answers: list[T]) -> list[T]:
        if not answers:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise _PermError(f"more than {MAX_VOID_LOOKUPS} lookups found nothing")
        return answers

    def _expand(self, spec: str, domain: str) -> str:
        """The domain-spec with its macros (section 7) filled in."""
        if _MACRO.sub("", spec).count("%"):
            raise _PermError(f"{spec!r} has a broken macro")
        return _MACRO.sub(lambda m: self._macro(m, domain), spec).rstrip(".")

    def _macro(self, m: re.Match[str], domain: str) -> str:
        literal = {"%%": "%", "%_": " ", "%-": "%20"}.get(m.group(0))
        if literal is not None:
            return literal
        letter, digits, reverse, delimiters = m.groups()
        value = self._macro_value(letter.lower(), domain)
        parts = re.split(f"[{re.escape(delimiters or '.')}]", value)
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise _PermError(f"{m.group(0)!r} keeps no part")
            parts = parts[-int(digits) :]
        value = ".".join(parts)
        return quote(value, safe="") if letter.isupper() else value

    def _macro_value(self, letter: str, domain: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")
        if self.ip.version == 4:
            dotted = str(self.ip)
        else:
            dotted = ".".join(self.ip.exploded.replace(":", ""))
        values = {
            "s": self.sender,
            "l": local or "postmaster",
            "o": sender_domain,
            "d": domain,
            "i": dotted,
            "p": "unknown",
            "v": "in-addr" if self.ip.version == 4 else "ip6",
            "h": sender_domain,  # the HELO name: ours is not known here; the domain stands in
        }
        if letter not in values:
            raise _PermError(f"%{{{letter}}} is only allowed in exp=")
        return values[letter]
