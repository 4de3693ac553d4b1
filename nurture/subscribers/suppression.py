"""Who may never be mailed or added again by an operator, under any spelling of their address.

Forgotten and purged people leave only the blind index of their canonical address in
`suppressions`: enough to refuse them, nothing to read. People who left (unsubscribed,
bounced, complained) keep their row with its status; an operator's add or import of the
same mailbox under another spelling (alice@gmail.com left, a.lice+old@gmail.com is
imported) is refused as they would be. Only the person can come back, through the signup
form and its confirmation. Mail still goes to the exact address a person gave.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.context import current
from nurture.subscribers.addresses import canonical_index
from nurture.subscribers.models import Subscriber, Suppression
from nurture.subscribers.rules import FORGOTTEN, LEFT, left_reason


def _legacy_hash(address: str) -> str:
    # How suppressions were written before addresses were sealed: kept readable so that
    # people forgotten then stay refused.
    key = current().settings.secret.encode()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()


def suppression_keys(address: str) -> list[str]:
    return [canonical_index(address), _legacy_hash(address)]


def is_suppressed(s: Session, address: str) -> bool:
    keys = suppression_keys(address)
    return (
        s.scalar(select(Suppression.email_hash).where(Suppression.email_hash.in_(keys))) is not None
    )


def suppress(s: Session, address: str, reason: str) -> None:
    """Never again, for this mailbox (safe to repeat)."""
    digest = canonical_index(address)
    if s.get(Suppression, digest) is None:
        s.add(Suppression(email_hash=digest, reason=reason))


def refusal(s: Session, address: str, sub: Subscriber | None) -> str | None:
    """Why no operator may add this (normalised) address, or None: it was forgotten, its
    person left, or the same mailbox left under another spelling."""
    if is_suppressed(s, address):
        return FORGOTTEN
    if sub is not None and left_reason(sub.status) is not None:
        return left_reason(sub.status)
    return left_elsewhere(s, [address]).get(address)


def left_elsewhere(s: Session, addresses: Iterable[str]) -> dict[str, str]:
    """Of these addresses, those whose mailbox someone left from under any spelling:
    address -> why (unsubscribed, bounced, complained)."""
    by_index: dict[str, list[str]] = {}
    for address in addresses:
        by_index.setdefault(canonical_index(address), []).append(address)
    found: dict[str, str] = {}
    q = select(Subscriber.canonical_index, Subscriber.status).where(
        Subscriber.canonical_index.in_(list(by_index)), Subscriber.status.in_(list(LEFT))
    )
    for index, status in s.execute(q):
        for address in by_index[index]:
            found.setdefault(address, str(status))
    return found
