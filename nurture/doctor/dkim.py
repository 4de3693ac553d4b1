"""Is the DKIM key in DNS the public half of NURTURE_DKIM_PRIVATE_KEY?

nurture signs as the From domain (mail/message.py), with the selector NURTURE_DKIM_SELECTOR,
so receivers fetch `SELECTOR._domainkey.DOMAIN` for every From domain of every sequence. A
record holding another key fails every signature, which is worse than not signing: mail
then fails DMARC even where SPF alone would have passed it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nurture.config import Settings
from nurture.doctor.lookup import DnsTrouble, Lookup
from nurture.doctor.report import Finding, fail, ok, warn

CHECK = "dkim"
# Receivers ignore RSA keys under 1024 bits (RFC 8301); 2048 is what everyone asks for.
MIN_BITS, GOOD_BITS = 1024, 2048


@dataclass(frozen=True)
class SigningKey:
    selector: str
    public: rsa.RSAPublicKey
    value: str  # what p= should hold: the public key, DER SubjectPublicKeyInfo, base64

    @property
    def record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.value}"


@dataclass(frozen=True)
class DkimCheck:
    finding: Finding
    # True: mail is signed as the domain with the published key; False: signed, but
    # receivers cannot verify it; None: nurture does not sign (a provider may).
    passes: bool | None


def signing_key(settings: Settings) -> SigningKey | Finding:
    """The key nurture signs with, or the Finding that says why there is none."""
    selector, path = settings.dkim_selector, settings.dkim_private_key
    if not selector and not path:
        return warn(
            CHECK,
            "",
            "nurture does not sign its mail (NURTURE_DKIM_SELECTOR and NURTURE_DKIM_PRIVATE_KEY "
            "are not set); Gmail and Yahoo require DKIM: set both (docs/operations.md, "
            "section 2), unless your mail provider signs as your From domain",
        )
    if not selector or not path:
        missing = "NURTURE_DKIM_SELECTOR" if not selector else "NURTURE_DKIM_PRIVATE_KEY"
        return fail(CHECK, "", f"{missing} is not set, so nothing is signed: set both or neither")
    try:
        key = serialization.load_pem_private_key(Path(path).expanduser().read_bytes(), None)
    except OSError as exc:
        return fail(CHECK, "", f"cannot read NURTURE_DKIM_PRIVATE_KEY ({path}: {exc.strerror})")
    except (ValueError, TypeError):
        # Never the file's contents: it is the private key.
        return fail(CHECK, "", f"{path} (NURTURE_DKIM_PRIVATE_KEY) is not a PEM private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        return fail(CHECK, "", f"{path} is not an RSA key: nurture signs with rsa-sha256")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(selector, key.public_key(), base64.b64encode(der).decode("ascii"))


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


def _published_key(tags: dict[str, str]) -> rsa.RSAPublicKey | None:
    try:
        # SubjectPublicKeyInfo (RFC 6376); a bare RSAPublicKey loads too, as dkimpy allows.
        key = serialization.load_der_public_key(base64.b64decode(tags.get("p", ""), validate=True))
    except (ValueError, binascii.Error):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def check_dkim(lookup: Lookup, key: SigningKey, domain: str) -> DkimCheck:
    name = f"{key.selector}._domainkey.{domain}"
    publish = f"publish a TXT record at {name}: {key.record}"
    try:
        records = [r for r in lookup.txt(name) if "p=" in r.replace(" ", "")]
    except DnsTrouble as exc:
        return DkimCheck(warn(CHECK, domain, f"could not check {name}: {exc}"), None)
    if not records:
        return DkimCheck(fail(CHECK, domain, f"no DKIM key at {name}: {publish}"), False)
    if len(records) > 1:
        text = f"{name} has {len(records)} DKIM records: keep one, {key.record}"
        return DkimCheck(fail(CHECK, domain, text), False)
    tags = _tags(records[0])
    if not tags.get("p"):
        text = f"the key at {name} is revoked (empty p=): {publish}"
        return DkimCheck(fail(CHECK, domain, text), False)
    published = _published_key(tags)
    if tags.get("k", "rsa").lower() != "rsa" or published is None:
        return DkimCheck(fail(CHECK, domain, f"{name} holds no usable RSA key: {publish}"), False)
    if published.public_numbers() != key.public.public_numbers():
        text = (
            f"the key at {name} is not the public half of NURTURE_DKIM_PRIVATE_KEY, so "
            f"receivers reject every signature: {publish} (or point NURTURE_DKIM_PRIVATE_KEY "
            "at the key that matches it)"
        )
        return DkimCheck(fail(CHECK, domain, text), False)
    return DkimCheck(_strength(key, name, domain, tags), True)


def _strength(key: SigningKey, name: str, domain: str, tags: dict[str, str]) -> Finding:
    bits = key.public.key_size
    if bits < MIN_BITS:
        return fail(
            CHECK,
            domain,
            f"the key at {name} is {bits}-bit: receivers ignore keys under "
            f"{MIN_BITS} bits; make a {GOOD_BITS}-bit key under a new selector",
        )
    if bits < GOOD_BITS:
        return warn(
            CHECK,
            domain,
            f"the key at {name} matches but is {bits}-bit: move to a "
            f"{GOOD_BITS}-bit key under a new selector",
        )
    if "y" in tags.get("t", "").lower().split(":"):
        return warn(
            CHECK,
            domain,
            f"the key at {name} matches, but t=y marks it as a test: receivers "
            "may ignore failed signatures; remove t=y once mail passes",
        )
    return ok(CHECK, domain, f"the key at {name} matches NURTURE_DKIM_PRIVATE_KEY ({bits}-bit)")
