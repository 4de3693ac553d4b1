"""Subscribers: adding, enrolling, confirming, booking, bouncing, complaining, and the
events that record them. Every state change that stops mail also ends enrollments and
cancels queued deliveries in the same transaction (unsubscribing: subscribers/unsubscribe.py)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NotFound, NurtureError
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import first_due, is_valid_timezone
from nurture.sequences.services import live_steps
from nurture.subscribers.cleaning import clean, clean_name
from nurture.subscribers.models import (
    ENDED,
    Consent,
    Enrollment,
    EnrollmentStatus,
    Event,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from nurture.subscribers.rules import left_reason

CLI_CONSENT = "Added by the operator, who holds this person's consent."
CLI_CONSENT_VERSION = "cli-1"


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(clean(raw).strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NurtureError(f"not a valid email address: {exc}") from None
    # The local part is case-sensitive in theory, in practice nobody relies on it; folding
    # it keeps one person from being two subscribers.
    return result.normalized.lower()


def email_hash(email: str) -> str:
    key = current().settings.secret.encode()
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()


def is_suppressed(s: Session, email: str) -> bool:
    return s.get(Suppression, email_hash(email)) is not None


def find_subscriber(s: Session, email: str) -> Subscriber | None:
    return s.scalar(select(Subscriber).where(Subscriber.email == normalize_email(email)))


def get_subscriber(s: Session, email: str) -> Subscriber:
    sub = find_subscriber(s, email)
    if sub is None:
        raise NotFound("no subscriber with that address")
    return sub


def record_event(
    s: Session,
    kind: str,
    sub: Subscriber | None = None,
    *,
    data: dict[str, Any] | None = None,
    **ids: int | None,
) -> Event:
    event = Event(kind=kind, subscriber_id=sub.id if sub else None, data=data or {}, **ids)
    s.add(event)
    return event


def add_subscriber(
    s: Session,
    email: str,
    sequence: Sequence,
    *,
    first_name: str | None = None,
    timezone: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    consent_text: str = CLI_CONSENT,
    consent_version: str = CLI_CONSENT_VERSION,
    article: str | None = None,
    client_hash: str | None = None,
    await_confirmation: bool = False,
) -> Subscriber:
    """Create (or find) the subscriber and enrol them; confirmed=True starts the sequence.

    await_confirmation=True (web signups) leaves the enrollment pending even when the address
    is already confirmed for another sequence: each sequence needs its own yes.
    """
    address = normalize_email(email)
    timezone = _checked_timezone(timezone)
    if is_suppressed(s, address):
        raise NurtureError("this address asked to be forgotten and may not be added again")
    sub = _upsert_person(s, address, clean_name(first_name), timezone, confirmed=confirmed)
    s.add(
        Consent(
            subscriber_id=sub.id,
            sequence_id=sequence.id,
            source=source,
            article=article,
            consent_text=consent_text,
            consent_version=consent_version,
            client_hash=client_hash,
            confirmed_at=now() if confirmed else None,
        )
    )
    enrol(s, sub, sequence, start_now=not await_confirmation, source=source)
    if confirmed:
        confirm(s, sub)
    return sub


def _checked_timezone(timezone: str | None) -> str | None:
    timezone = clean(timezone).strip() or None if timezone is not None else None
    if timezone is not None and not is_valid_timezone(timezone):
        raise NurtureError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)")
    return timezone


def _upsert_person(
    s: Session, address: str, first_name: str | None, timezone: str | None, *, confirmed: bool
) -> Subscriber:
    """The subscriber row for a (normalised) address: new, or known with its details updated."""
    sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
    if sub is None:
        sub = Subscriber(email=address, first_name=first_name, timezone=timezone)
        s.add(sub)
        s.flush()
        return sub
    sub.first_name = first_name or sub.first_name
    sub.timezone = timezone or sub.timezone
    if left_reason(sub.status) is not None and not confirmed:
        # Coming back after leaving needs a fresh confirmation.
        sub.status = SubscriberStatus.PENDING
    return sub


def latest_consent_id(s: Session, sub: Subscriber, sequence: Sequence) -> int | None:
    """The consent just recorded by add_subscriber: its id is what a confirmation link carries."""
    s.flush()
    return s.scalar(
        select(Consent.id)
        .where(Consent.subscriber_id == sub.id, Consent.sequence_id == sequence.id)
        .order_by(Consent.id.desc())
        .limit(1)
    )


def enrol(
    s: Session,
    sub: Subscriber,
    sequence: Sequence,
    *,
    start_now: bool = True,
    source: str | None = None,
) -> Enrollment:
    enrollment = s.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == sequence.id
        )
    )
    if enrollment is None:
        enrollment = Enrollment(subscriber_id=sub.id, sequence_id=sequence.id, source=source)
        s.add(enrollment)
        s.flush()
    elif enrollment.status in ENDED and enrollment.status != EnrollmentStatus.COMPLETED:
        # A fresh signup after leaving starts again once confirmed, with the steps it has not
        # had yet (see start_enrollment(): a step is never delivered twice to one enrollment).
        enrollment.status = EnrollmentStatus.PENDING
        enrollment.next_step_id = None
        enrollment.next_due_at = None
        enrollment.last_step_id = None
        enrollment.ended_at = None
        enrollment.source = source or enrollment.source
    if (
        start_now
        and sub.status == SubscriberStatus.CONFIRMED
        and enrollment.status == EnrollmentStatus.PENDING
    ):
        start_enrollment(s, enrollment)
    return enrollment


def start_enrollment(s: Session, enrollment: Enrollment) -> None:
    # Steps that already have a delivery row (sent, or cancelled by an unsubscribe) are
    # skipped: the unique (enrollment, step) key would refuse them anyway, and claiming one
    # would leave the enrollment stuck.
    had = set(s.scalars(select(Delivery.step_id).where(Delivery.enrollment_id == enrollment.id)))
    steps = [st for st in live_steps(s, enrollment.sequence_id) if st.id not in had]
    if not steps:
        enrollment.status = EnrollmentStatus.COMPLETED
        enrollment.ended_at = now()
        return
    t = now()
    enrollment.status = EnrollmentStatus.ACTIVE
    enrollment.started_at = t
    enrollment.next_step_id = steps[0].id
    enrollment.next_due_at = first_due(
        enrollment.sequence, enrollment.subscriber.timezone, t, steps[0].delay_seconds
    )


def confirm(s: Session, sub: Subscriber) -> bool:
    """Confirm the address and start its pending enrollments. Returns False if it already was."""
    if sub.status == SubscriberStatus.CONFIRMED:
        return False
    sub.status = SubscriberStatus.CONFIRMED
    sub.confirmed_at = now()
    for consent in sub.consents:
        consent.confirmed_at = consent.confirmed_at or sub.confirmed_at
    for enrollment in sub.enrollments:
        if enrollment.status == EnrollmentStatus.PENDING:
            start_enrollment(s, enrollment)
    record_event(s, "confirmed", sub)
    return True


def end_enrollments(s: Session, sub: Subscriber, status: EnrollmentStatus) -> int:
    ended = 0
    t = now()
    for enrollment in sub.enrollments:
        if enrollment.status in ENDED:
            continue
        enrollment.status = status
        enrollment.next_due_at = None
        enrollment.ended_at = t
        ended += 1
    ids = [e.id for e in sub.enrollments]
    if ids:
        # Claimed but unsent mail dies here; a worker re-checks status before each send too.
        s.execute(
            update(Delivery)
            .where(Delivery.enrollment_id.in_(ids), Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.CANCELLED, error=f"subscriber {status.value}")
        )
    return ended


def mark_booked(s: Session, sub: Subscriber, source: str = "cli") -> bool:
    if sub.booked_at is not None:
        return False
    sub.booked_at = now()
    end_enrollments(s, sub, EnrollmentStatus.BOOKED)
    s.add(Event(kind="booked", subscriber_id=sub.id, data={"source": source}))
    return True


def mark_bounced(
    s: Session,
    sub: Subscriber,
    reason: str,
    *,
    data: dict[str, Any] | None = None,
    **ids: int | None,
) -> None:
    sub.status = SubscriberStatus.BOUNCED
    sub.bounced_at = now()
    end_enrollments(s, sub, EnrollmentStatus.BOUNCED)
    record_event(s, "bounced", sub, data={"reason": reason[:200], **(data or {})}, **ids)


def mark_complained(
    s: Session, sub: Subscriber, *, data: dict[str, Any] | None = None, **ids: int | None
) -> bool:
    """They marked our mail as spam: every sequence ends and they are never mailed again
    (only a fresh signup through the form and its confirmation brings them back).
    Returns False if they already had."""
    if sub.status == SubscriberStatus.COMPLAINED:
        return False
    sub.status = SubscriberStatus.COMPLAINED
    sub.complained_at = now()
    end_enrollments(s, sub, EnrollmentStatus.COMPLAINED)
    record_event(s, "complained", sub, data=data, **ids)
    return True
