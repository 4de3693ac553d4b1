"""The operator adding people (`subscribers add`, `subscribers import`): the consent rules.

An operator may add someone who holds no place yet, or re-enrol someone confirmed for
another sequence. They may never put back a person who left (unsubscribed, bounced,
complained) or was forgotten: such a row is skipped with its reason and nothing is sent.
Only the person can come back, through the signup form and its confirmation. Adding
someone already enrolled changes nothing and records no second consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.sequences.models import Sequence
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.rules import FORGOTTEN, left_reason
from nurture.subscribers.services import (
    CLI_CONSENT,
    CLI_CONSENT_VERSION,
    add_subscriber,
    is_suppressed,
    latest_consent_id,
    normalize_email,
)


class Outcome(StrEnum):
    ADDED = "added"
    ALREADY = "already enrolled"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class OperatorAdd:
    outcome: Outcome
    # SKIPPED: why (unsubscribed, bounced, complained, forgotten); ALREADY: the enrollment's
    # status; ADDED: None.
    reason: str | None = None
    status: str | None = None  # the person's status after an ADDED
    consent_id: int | None = None  # ADDED and waiting for confirmation: what to send


def refusal(s: Session, address: str, sub: Subscriber | None) -> str | None:
    """Why no operator may add this (normalised) address, or None."""
    if is_suppressed(s, address):
        return FORGOTTEN
    return left_reason(sub.status) if sub is not None else None


def add_by_operator(
    s: Session,
    email: str,
    seq: Sequence,
    *,
    first_name: str | None = None,
    timezone: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    consent_text: str = CLI_CONSENT,
    consent_version: str = CLI_CONSENT_VERSION,
) -> OperatorAdd:
    """Add one person as the consent rules allow. Raises NurtureError for a bad address."""
    address = normalize_email(email)
    sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
    reason = refusal(s, address, sub)
    if reason is not None:
        return OperatorAdd(Outcome.SKIPPED, reason)
    if sub is not None:
        enrollment = s.scalar(
            select(Enrollment).where(
                Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
            )
        )
        # A pending enrollment may still be confirmed by an operator who holds the consent;
        # anything else is a place already taken.
        if enrollment is not None and not (
            confirmed and enrollment.status == EnrollmentStatus.PENDING
        ):
            return OperatorAdd(Outcome.ALREADY, str(enrollment.status))
    sub = add_subscriber(
        s,
        address,
        seq,
        first_name=first_name,
        timezone=timezone,
        confirmed=confirmed,
        source=source,
        consent_text=consent_text,
        consent_version=consent_version,
        # Without --confirmed each sequence needs its own yes, even from someone confirmed
        # for another one.
        await_confirmation=not confirmed,
    )
    consent_id = None if confirmed else latest_consent_id(s, sub, seq)
    return OperatorAdd(Outcome.ADDED, status=str(sub.status), consent_id=consent_id)


def skipped_message(reason: str) -> str:
    if reason == FORGOTTEN:
        return "skipped: this address asked to be forgotten and may not be added again"
    return (
        f"skipped: this person is {reason}; only they can come back, through the signup "
        "form and its confirmation"
    )
