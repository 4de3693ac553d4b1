"""Adding a person and enrolling them: the consent recorded with every enrollment, what a yes
starts (`confirm`: the one rule for confirming, by link or by an operator who holds the
consent) and how an enrollment starts (its first step's due time). The confirmation email
and its link: confirmation.py; the operator's rules on top: operator.py; the form's:
signup.py."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery
from nurture.errors import NurtureError
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import due_for, first_due, is_valid_timezone
from nurture.sequences.services import live_steps
from nurture.subscribers.addresses import email_index, new_subscriber, normalize_email, rename
from nurture.subscribers.cleaning import clean, clean_name
from nurture.subscribers.models import (
    ENDED,
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.rules import left_reason
from nurture.subscribers.suppression import is_suppressed

CLI_CONSENT = "Added by the operator, who holds this person's consent."
CLI_CONSENT_VERSION = "cli-1"


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
    waiting: bool = True,
    update_name: bool = True,
) -> Subscriber:
    """Create (or find) the subscriber and enrol them; confirmed=True (a consent the operator
    holds) confirms them and starts the sequence.

    await_confirmation=True (web signups) leaves the enrollment pending even when the address
    is already confirmed for another sequence: each sequence needs its own yes.
    waiting=False (imports): nobody is waiting for the welcome, which keeps to their window
    (first_send). update_name=False keeps the name of someone known, filling in a missing one.
    """
    address = normalize_email(email)
    timezone = _checked_timezone(timezone)
    if is_suppressed(s, address):
        raise NurtureError("this address asked to be forgotten and may not be added again")
    sub = _upsert_person(
        s, address, clean_name(first_name), timezone, confirmed=confirmed, update_name=update_name
    )
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
    enrol(s, sub, sequence, start_now=not await_confirmation, source=source, waiting=waiting)
    if confirmed:
        confirm(s, sub, waiting=waiting)
    return sub


def _checked_timezone(timezone: str | None) -> str | None:
    timezone = clean(timezone).strip() or None if timezone is not None else None
    if timezone is not None and not is_valid_timezone(timezone):
        raise NurtureError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)")
    return timezone


def _upsert_person(
    s: Session,
    address: str,
    first_name: str | None,
    timezone: str | None,
    *,
    confirmed: bool,
    update_name: bool = True,
) -> Subscriber:
    """The subscriber row for a (normalised) address: new, or known with its details updated."""
    sub = s.scalar(select(Subscriber).where(Subscriber.email_index == email_index(address)))
    if sub is None:
        sub = new_subscriber(address, first_name, timezone)
        s.add(sub)
        s.flush()
        return sub
    if first_name and (update_name or not sub.first_name_sealed):
        rename(sub, first_name)
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
    waiting: bool = True,
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
        start_enrollment(s, enrollment, waiting=waiting)
    return enrollment


def first_send(
    seq: Sequence,
    subscriber_tz: str | None,
    started: datetime,
    delay_seconds: int,
    *,
    waiting: bool,
) -> datetime:
    """When a new enrollment's first step goes. Only a reader who has just said yes (the
    confirmation link, an operator adding them at their request) is waiting for the welcome:
    for them an immediate first step goes at once, whatever the hour. Anyone else (an
    imported list) gets it in their own window: a welcome at 01:28 their time, from a list
    they never saw being loaded, reads as spam."""
    if waiting:
        return first_due(seq, subscriber_tz, started, delay_seconds)
    return due_for(seq, subscriber_tz, started, delay_seconds)


def start_enrollment(s: Session, enrollment: Enrollment, *, waiting: bool = True) -> None:
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
    enrollment.next_due_at = first_send(
        enrollment.sequence,
        enrollment.subscriber.timezone,
        t,
        steps[0].delay_seconds,
        waiting=waiting,
    )


def confirm(
    s: Session, sub: Subscriber, sequence_id: int | None = None, *, waiting: bool = True
) -> bool:
    """The person said yes. An unconfirmed address is confirmed, and every sequence waiting
    for it starts; an address confirmed before says yes to `sequence_id` alone (each sequence
    needs its own yes). Returns False when there was nothing to confirm."""
    first = sub.status != SubscriberStatus.CONFIRMED
    if not first and sequence_id is None:
        return False
    at = now()
    if first:
        sub.status, sub.confirmed_at = SubscriberStatus.CONFIRMED, at
    for consent in sub.consents:
        if first or consent.sequence_id == sequence_id:
            consent.confirmed_at = consent.confirmed_at or at
    for enrollment in sub.enrollments:
        if enrollment.status == EnrollmentStatus.PENDING and (
            first or enrollment.sequence_id == sequence_id
        ):
            start_enrollment(s, enrollment, waiting=waiting)
    record_event(s, EventKind.CONFIRMED, sub, sequence_id=None if first else sequence_id)
    return True
