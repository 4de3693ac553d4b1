"""Every check of `nurture doctor`, in the order the operator reads them: for each From
domain SPF, DKIM and DMARC, then the relay, the base URL, the one-click endpoint, the keys.

Which domains: the From address of every sequence (a discreet sequence sends from the same
address under a neutral name, so its domain is checked the same way), and for SPF the
envelope sender's domain, NURTURE_BOUNCE_ADDRESS's when set, else the From address's,
because SPF is checked against the envelope sender, not the From header.
"""

from __future__ import annotations

from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.config import Settings
from nurture.doctor.dkim import DkimCheck, SigningKey, check_dkim, signing_key
from nurture.doctor.dmarc import Evidence, check_dmarc
from nurture.doctor.keys import check_keys
from nurture.doctor.lookup import DnsTrouble, IPAddress, Lookup
from nurture.doctor.relay import Relay, check_relay, no_relay, relay_of
from nurture.doctor.report import Finding, fail, ok, warn
from nurture.doctor.spf import SpfResult, check_host, spf_records
from nurture.doctor.web import check_base_url, check_one_click
from nurture.mail.message import ascii_domain, domain_of
from nurture.sequences.models import Sequence


@dataclass
class Probe:
    """What the checks reach the world through; tests pass servers of their own."""

    lookup: Lookup
    cafile: str | None = None  # the authorities trusted for TLS; None: the system's
    timeout: float = 5.0  # seconds, for each connection (DNS, SMTP, HTTP)


@dataclass(frozen=True)
class SpfCheck:
    finding: Finding
    passes: bool | None  # every relay address passes; None: could not tell


def sender_addresses(s: Session) -> list[str]:
    """The From address of every sequence, each once, IDNA-encoded as it is sent."""
    found = {ascii_domain(seq.config.from_.email).lower() for seq in s.scalars(select(Sequence))}
    return sorted(found)


def run_doctor(settings: Settings, probe: Probe, senders: list[str]) -> list[Finding]:
    relay = relay_of(settings.mail_url)
    findings = domain_checks(settings, probe, senders, relay)
    findings.append(
        no_relay(settings.mail_url)
        if relay is None
        else check_relay(relay, cafile=probe.cafile, timeout=probe.timeout)
    )
    findings.append(check_base_url(settings))
    findings.append(check_one_click(settings, cafile=probe.cafile, timeout=probe.timeout))
    findings += check_keys(settings)
    return findings


def domain_checks(
    settings: Settings, probe: Probe, senders: list[str], relay: Relay | None
) -> list[Finding]:
    if not senders:
        text = "no sequences yet, so no From domain to check: `nurture sequences apply` first"
        return [warn("sequences", "", text)]
    psl = PublicSuffixList()  # the list ships with the package: no download
    key = signing_key(settings)
    findings = [key] if isinstance(key, Finding) else []
    addresses = _relay_addresses(probe.lookup, relay)
    spf: dict[str, SpfCheck] = {}
    # One set of lines per domain, however many sequences (and addresses) send from it.
    first = {domain_of(sender): sender for sender in reversed(senders)}
    for domain, sender in sorted(first.items()):
        envelope = settings.bounce_address or sender
        envelope_domain = domain_of(envelope)
        if envelope_domain not in spf:
            spf[envelope_domain] = check_spf(probe.lookup, envelope, relay, addresses)
            findings.append(spf[envelope_domain].finding)
        dkim = _dkim(probe.lookup, key, domain, settings.dkim_enabled)
        if dkim.finding is not key:
            findings.append(dkim.finding)
        seen = Evidence(dkim.passes, envelope_domain, spf[envelope_domain].passes)
        findings.append(check_dmarc(probe.lookup, psl, domain, seen))
    return findings


def _dkim(lookup: Lookup, key: SigningKey | Finding, domain: str, enabled: bool) -> DkimCheck:
    if isinstance(key, Finding):
        # No usable key: unsigned when the settings do not ask for signing, and when they
        # do, every send stops on the unreadable key, which DMARC cannot pass either.
        return DkimCheck(key, False if enabled else None)
    return check_dkim(lookup, key, domain)


def _relay_addresses(lookup: Lookup, relay: Relay | None) -> list[IPAddress] | str:
    """The relay's addresses, or why they are not known."""
    if relay is None:
        return "there is no relay to check it against (NURTURE_MAIL_URL is not smtp://)"
    try:
        found = lookup.addresses(relay.host)
    except DnsTrouble as exc:
        return f"could not look up the relay {relay.host} ({exc})"
    return found or f"the relay {relay.host} has no address in DNS"


def check_spf(
    lookup: Lookup, sender: str, relay: Relay | None, addresses: list[IPAddress] | str
) -> SpfCheck:
    domain = domain_of(sender)
    try:
        records = spf_records(lookup, domain)
    except DnsTrouble as exc:
        return SpfCheck(warn("spf", domain, f"could not check: {exc}"), None)
    if not records:
        text = (
            f'no SPF record: publish a TXT record at {domain}: "v=spf1 include:<the include '
            'your mail provider documents> ~all"'
        )
        return SpfCheck(fail("spf", domain, text), False)
    if len(records) > 1:
        text = f"{len(records)} SPF records, and a domain may have only one: merge them into one"
        return SpfCheck(fail("spf", domain, text), False)
    if isinstance(addresses, str):
        return SpfCheck(warn("spf", domain, f"published, but {addresses}"), None)
    assert relay is not None  # addresses were found for it
    results = {ip: check_host(lookup, ip, domain, sender) for ip in addresses}
    return _spf_verdict(domain, relay, results)


def _spf_verdict(domain: str, relay: Relay, verdicts: dict[IPAddress, SpfResult]) -> SpfCheck:
    broken = [r for r in verdicts.values() if r.result == "permerror"]
    if broken:
        text = f"the record is broken, so receivers ignore it: {broken[0].reason}"
        return SpfCheck(fail("spf", domain, text), False)
    unknown = [r for r in verdicts.values() if r.result == "temperror"]
    if unknown:
        return SpfCheck(warn("spf", domain, f"could not check: {unknown[0].reason}"), None)
    refused = [str(ip) for ip, r in verdicts.items() if r.result != "pass"]
    if refused:
        text = (
            f"does not allow the relay {relay.host} ({', '.join(refused)}): add the include: "
            f"your provider documents, or ip4:/ip6: for these addresses, to {domain}'s record "
            f"(a provider that sends from other servers than {relay.host} documents the "
            "include: that covers them)"
        )
        return SpfCheck(fail("spf", domain, text), False)
    shown = ", ".join(str(ip) for ip in verdicts)
    return SpfCheck(ok("spf", domain, f"allows the relay {relay.host} ({shown})"), True)
