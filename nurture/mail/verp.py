"""VERP: a return path per delivery, so a bounce names the delivery it is about.

With NURTURE_BOUNCE_ADDRESS=bounces@example.org, delivery 42 goes out with the envelope
sender `bounces+42-<sig>@example.org`. The signature is a keyed hash of the id and of the
person's public id (the secret key, a salt of its own), so nobody can write a fake bounce
that ends someone else's subscription by guessing tags, and a late bounce names nobody but
the person it was sent to, even if their delivery's number were ever given to another.
Lower-case letters, digits and one dash: mail systems that fold the case of local parts, or
mangle anything but the plainest characters, keep it intact. Short enough that the address
stays well under the 64-octet local-part limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIG_LENGTH = 10  # 40 bits: enough against guessing, short in every header
TAG = re.compile(rf"(\d{{1,18}})-([0-9a-f]{{{SIG_LENGTH}}})")


def _sig(secret: str, delivery_id: int, public_id: str) -> str:
    message = f"nurture.verp:{delivery_id}:{public_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:SIG_LENGTH]


def tag(secret: str, delivery_id: int, public_id: str) -> str:
    return f"{delivery_id}-{_sig(secret, delivery_id, public_id)}"


def return_path(bounce_address: str, secret: str, delivery_id: int | None, public_id: str) -> str:
    """The envelope sender for one delivery (untagged when there is no delivery: tests)."""
    if delivery_id is None:
        return bounce_address
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{tag(secret, delivery_id, public_id)}@{domain}"


def delivery_named(tag_text: str) -> int | None:
    """The delivery id a tag claims to name (to look up; `is_ours` then checks it)."""
    m = TAG.fullmatch(tag_text.strip().lower())
    return int(m.group(1)) if m else None


def is_ours(tag_text: str, secret: str, delivery_id: int, public_id: str) -> bool:
    """Whether the tag was made by us for this delivery to this person."""
    m = TAG.fullmatch(tag_text.strip().lower())
    if m is None or int(m.group(1)) != delivery_id:
        return False
    return hmac.compare_digest(m.group(2), _sig(secret, delivery_id, public_id))


def find_tags(text: str, bounce_address: str) -> list[str]:
    """Every tag on our bounce address in `text` (headers or a whole bounce)."""
    local, _, domain = bounce_address.rpartition("@")
    pattern = re.compile(
        rf"{re.escape(local)}\+([0-9a-z-]{{1,40}})@{re.escape(domain)}", re.IGNORECASE
    )
    return list(dict.fromkeys(m.group(1).lower() for m in pattern.finditer(text)))
