"""Verifying and applying booking webhooks.

Calendly signs `Calendly-Webhook-Signature: t=<unix time>,v1=<hex>` where hex is
HMAC-SHA256(key, "<t>." + raw body); a `t` further than TOLERANCE from our clock is refused,
so a captured request cannot be replayed later. Cal.com signs `X-Cal-Signature-256: <hex>`,
HMAC-SHA256(key, raw body). Both are checked on the raw bytes, before any JSON parsing.

A verified booking for an address we know marks it booked (its sequences end and queued
mail is cancelled); an unknown address, an event type we do not act on, or a replay of a
booking already recorded changes nothing and is still acknowledged, so the sender does not
retry it forever.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from nurture.booking.booked import mark_booked
from nurture.clock import now
from nurture.db import transaction
from nurture.errors import NurtureError
from nurture.subscribers.addresses import find_subscriber

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
CALENDLY_HEADER = "Calendly-Webhook-Signature"
CAL_HEADER = "X-Cal-Signature-256"


class Outcome(IntEnum):
    BOOKED = 200  # a subscriber was marked booked
    IGNORED = 202  # verified, but nothing to do (unknown address, replay, other event)
    BAD_REQUEST = 400  # verified, but not JSON we understand
    UNSIGNED = 401  # missing, wrong or stale signature


@dataclass(frozen=True)
class Booking:
    provider: str
    emails: tuple[str, ...]


def _hmac_hex(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def verify_calendly(key: str, header: str, body: bytes, at: float) -> bool:
    if not header.isascii():
        return False  # compare_digest refuses non-ASCII text: it is no signature of ours
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, value)
    ts, sig = parts.get("t", ""), parts.get("v1", "")
    if not ts.isdigit() or len(ts) > 12 or not sig:
        return False
    if abs(at - int(ts)) > TOLERANCE_SECONDS:
        return False
    expected = _hmac_hex(key, ts.encode() + b"." + body)
    return hmac.compare_digest(expected, sig.lower())


def verify_cal(key: str, header: str, body: bytes) -> bool:
    sig = header.strip().lower().removeprefix("sha256=")
    return bool(sig) and sig.isascii() and hmac.compare_digest(_hmac_hex(key, body), sig)


def parse(provider: str, body: bytes) -> Booking | None:
    """The invitee addresses of a booking event, or None for any other event."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise NurtureError("body is not JSON") from None
    if not isinstance(data, dict):
        raise NurtureError("body is not a JSON object")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise NurtureError("no payload object")
    if provider == "calendly":
        if data.get("event") != "invitee.created":
            return None
        email = payload.get("email")
        return Booking(provider, (email,) if isinstance(email, str) else ())
    if data.get("triggerEvent") != "BOOKING_CREATED":
        return None
    attendees = payload.get("attendees") or []
    emails = tuple(
        a["email"] for a in attendees if isinstance(a, dict) and isinstance(a.get("email"), str)
    )
    return Booking(provider, emails)


def handle_booking_webhook(
    key: str, body: bytes, *, calendly: str | None, cal: str | None
) -> Outcome:
    """Verify, parse and apply one webhook request (`calendly`, `cal`: the signature headers)."""
    if calendly:
        provider = "calendly"
        ok = verify_calendly(key, calendly, body, now().timestamp())
    elif cal:
        provider = "cal.com"
        ok = verify_cal(key, cal, body)
    else:
        provider, ok = "unknown", False
    if not ok:
        log.warning("booking webhook refused: bad or stale %s signature", provider)
        return Outcome.UNSIGNED
    try:
        booking = parse(provider, body)
    except NurtureError as exc:
        log.warning("booking webhook from %s not understood: %s", provider, exc)
        return Outcome.BAD_REQUEST
    if booking is None:
        return Outcome.IGNORED
    booked = 0
    with transaction() as s:
        for email in booking.emails:
            try:
                sub = find_subscriber(s, email)
            except NurtureError:
                continue  # not an address at all
            if sub is not None and mark_booked(s, sub, source=provider):
                booked += 1
    log.info("booking webhook from %s: %d subscriber(s) marked booked", provider, booked)
    return Outcome.BOOKED if booked else Outcome.IGNORED
