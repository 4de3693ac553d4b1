"""Does the From domain publish DMARC, and will its mail pass it?

DMARC passes when SPF or DKIM passes for a domain that aligns with the From domain
(RFC 7489 section 3.1): the same domain (strict, `adkim=s` / `aspf=s`) or the same
organisational domain (relaxed, the default), the one under the public suffix:
mail.example.co.uk and example.co.uk align, example.co.uk and other.co.uk do not. nurture
signs DKIM as the From domain itself, so its signature always aligns; SPF aligns when the
envelope sender (NURTURE_BOUNCE_ADDRESS, or the From address) is on an aligned domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from nurture.doctor.lookup import DnsTrouble, Lookup
from nurture.doctor.report import Finding, fail, ok, warn

CHECK = "dmarc"
POLICIES = {"none", "quarantine", "reject"}


@dataclass(frozen=True)
class DmarcRecord:
    name: str  # where it was found: _dmarc.DOMAIN, or the organisational domain's
    policy: str | None  # p= (sp= when found at the organisational domain), None if invalid
    adkim: str  # "r" or "s"
    aspf: str


@dataclass(frozen=True)
class Evidence:
    """What decides whether mail from a domain passes DMARC."""

    dkim: bool | None  # nurture's signature verifies; None: nurture does not sign
    spf_domain: str  # the envelope sender's domain (SPF is checked for it)
    spf: bool | None  # the relay passes that domain's SPF; None: could not be checked


def _tags(record: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in record.split(";"))
    return {k.strip().lower(): v.strip() for k, eq, v in pairs if eq}


def _records(lookup: Lookup, domain: str) -> list[str]:
    return [r for r in lookup.txt(f"_dmarc.{domain}") if r.lower().startswith("v=dmarc1")]


def find_record(lookup: Lookup, psl: PublicSuffixList, domain: str) -> DmarcRecord | str | None:
    """The DMARC record that applies to `domain`: its own, else its organisational domain's.
    A string says what is wrong (two records count as none, RFC 7489 section 6.6.3)."""
    where, records = domain, _records(lookup, domain)
    org = psl.privatesuffix(domain)
    if not records and org and org != domain:
        where, records = org, _records(lookup, org)
    if not records:
        return None
    if len(records) > 1:
        return f"_dmarc.{where} has {len(records)} DMARC records, so receivers use none: keep one"
    tags = _tags(records[0])
    policy = tags.get("sp") if where != domain and "sp" in tags else tags.get("p")
    return DmarcRecord(
        name=f"_dmarc.{where}",
        policy=policy.lower() if policy and policy.lower() in POLICIES else None,
        adkim=tags.get("adkim", "r").lower(),
        aspf=tags.get("aspf", "r").lower(),
    )


def aligned(psl: PublicSuffixList, a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s" or a == b:
        return a == b
    org = psl.privatesuffix(a)
    return org is not None and org == psl.privatesuffix(b)


def check_dmarc(lookup: Lookup, psl: PublicSuffixList, domain: str, seen: Evidence) -> Finding:
    try:
        found = find_record(lookup, psl, domain)
    except DnsTrouble as exc:
        return warn(CHECK, domain, f"could not check _dmarc.{domain}: {exc}")
    if found is None:
        return fail(
            CHECK,
            domain,
            f"no DMARC record: Gmail, Yahoo and Microsoft require one; publish a TXT record at "
            f'_dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"',
        )
    if isinstance(found, str):
        return fail(CHECK, domain, found)
    if found.policy is None:
        text = f"{found.name} has no valid p= (none, quarantine or reject): add p=none to start"
        return fail(CHECK, domain, text)
    return _alignment(psl, domain, found, seen)


def _alignment(psl: PublicSuffixList, domain: str, record: DmarcRecord, seen: Evidence) -> Finding:
    through = []
    if seen.dkim:  # signed as `domain` itself: aligned, strict or relaxed
        through.append("DKIM")
    spf_aligned = aligned(psl, seen.spf_domain, domain, record.aspf)
    if seen.spf and spf_aligned:
        through.append("SPF")
    policy = f"p={record.policy} at {record.name}"
    if through:
        later = "; p=none only collects reports: move to p=quarantine once they are clean"
        note = later if record.policy == "none" else ""
        return ok(CHECK, domain, f"{policy}; mail passes it through {' and '.join(through)}{note}")
    reasons = [_dkim_reason(seen), _spf_reason(seen, domain, record, spf_aligned)]
    text = f"{policy}, but mail would fail it: {'; '.join(reasons)}"
    if seen.dkim is None:
        # A provider that signs as the domain passes it anyway; we cannot see that here.
        return warn(CHECK, domain, f"{text} (fine if your mail provider signs DKIM as {domain})")
    return fail(CHECK, domain, text)


def _dkim_reason(seen: Evidence) -> str:
    if seen.dkim is None:
        return "nurture does not sign DKIM"
    return "the DKIM signature will not verify (see the dkim line)"


def _spf_reason(seen: Evidence, domain: str, record: DmarcRecord, spf_aligned: bool) -> str:
    if not spf_aligned:
        mode = "strict (aspf=s)" if record.aspf == "s" else "relaxed"
        return (
            f"the envelope sender's domain {seen.spf_domain} does not align with {domain} "
            f"({mode}): use a NURTURE_BOUNCE_ADDRESS at {domain}"
        )
    if seen.spf is None:
        return f"SPF for {seen.spf_domain} could not be checked against a relay"
    return f"SPF for {seen.spf_domain} does not pass for the relay (see the spf line)"
