"""The operator adding people (`subscribers add`, `subscribers import`): the consent rules.

An operator may add someone who holds no place yet, or re-enrol someone confirmed for
another sequence. They may never put back a person who left (unsubscribed, bounced,
complained) or was forgotten, under any spelling of their address (subscribers/
suppression.py): such a row is skipped with its reason and nothing is sent.
Only the person can come back, through the signup form and its confirmation. Adding
someone already enrolled changes nothing and records no second consent.

Someone added without --confirmed is pending, and a pending person gets the same
confirmation email as a web signup (add_one, which `subscribers add` calls); an import
never sends one: a list is never cold-mailed confirmation requests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.db import transaction
from nurture.events.models import Event, EventKind
from nurture.mail.backends import MailError
from nurture.sequences.archive import require_open
from nurture.sequences.models import Sequence
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import find_subscriber, normalize_email
from nurture.subscribers.confirmation import send_confirmation
from nurture.subscribers.enrolling import (
    CLI_CONSENT,
    CLI_CONSENT_VERSION,
    add_subscriber,
    latest_consent_id,
)
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.rules import FORGOTTEN
from nurture.subscribers.suppression import refusal


class Outcome(StrEnum):
    ADDED = "added"
    ALREADY = "already enrolled"
    SKIPPED = "skipped"


class Asked(StrEnum):
    """What became of the confirmation email of one operator add."""

    NOT_NEEDED = "not needed"  # added as confirmed, or not added
    SENT = "sent"
    NOT_WANTED = "not wanted"  # send_confirmation found it no longer wanted
    FAILED = "failed"  # the mail server refused it, or could not be reached


@dataclass(frozen=True)
class OperatorAdd:
    outcome: Outcome
    # SKIPPED: why (unsubscribed, bounced, complained, forgotten); ALREADY: the enrollment's
    # status; ADDED: None.
    reason: str | None = None
    status: str | None = None  # the person's status after an ADDED
    # Waiting for a confirmation email not sent yet (ADDED, or ALREADY after a failed send).
    consent_id: int | None = None
    asked: Asked = Asked.NOT_NEEDED  # set by add_one only
    mail_error: str | None = None  # Asked.FAILED: why
    first_due: datetime | None = None  # ADDED and started: when the first step goes


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
    waiting: bool = True,
    update_name: bool = True,
    put_back: bool = True,
) -> OperatorAdd:
    """Add one person as the consent rules allow. Raises NurtureError for a bad address.
    waiting and update_name: as add_subscriber takes them. put_back=False (imports) leaves
    out of the sequence someone an operator took out of it (`subscribers remove`)."""
    address = normalize_email(email)
    sub = find_subscriber(s, address)
    decided = decide(s, address, sub, seq, confirmed, put_back=put_back)
    if decided is not None:
        return decided
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
        waiting=waiting,
        update_name=update_name,
    )
    consent_id = None if confirmed else latest_consent_id(s, sub, seq)
    s.flush()
    due = s.scalar(
        select(Enrollment.next_due_at).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
        )
    )
    return OperatorAdd(Outcome.ADDED, status=str(sub.status), consent_id=consent_id, first_due=due)


def decide(
    s: Session,
    address: str,
    sub: Subscriber | None,
    seq: Sequence,
    confirmed: bool,
    *,
    put_back: bool = True,
) -> OperatorAdd | None:
    """What the consent rules say of adding this (normalised) address, reading only: SKIPPED
    (with the reason) or ALREADY, else None: they may be added. An import's --dry-run asks
    this too, so it says what the import will do."""
    reason = refusal(s, address, sub)
    if reason is not None:
        return OperatorAdd(Outcome.SKIPPED, reason)
    return _already_enrolled(s, sub, seq, confirmed, put_back) if sub is not None else None


def _already_enrolled(
    s: Session, sub: Subscriber, seq: Sequence, confirmed: bool, put_back: bool
) -> OperatorAdd | None:
    """ALREADY when this person has a place in the sequence, else None (add them)."""
    enrollment = s.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
        )
    )
    if enrollment is None:
        return None
    if enrollment.status == EnrollmentStatus.CANCELLED and put_back:
        # Taken out by an operator (remove, move): an operator may put them back, with the
        # steps they have not had. An old list imported again may not.
        return None
    pending = enrollment.status == EnrollmentStatus.PENDING
    if pending and confirmed:
        # A pending enrollment may still be confirmed by an operator who holds the consent.
        return None
    if pending and not _asked_to_confirm(s, sub, seq):
        # The add before could not send the confirmation email (the mail server was down):
        # adding again is the retry it promised, so this one sends it.
        return OperatorAdd(
            Outcome.ALREADY, str(enrollment.status), consent_id=latest_consent_id(s, sub, seq)
        )
    return OperatorAdd(Outcome.ALREADY, str(enrollment.status))


def _asked_to_confirm(s: Session, sub: Subscriber, seq: Sequence) -> bool:
    sent = select(Event.id).where(
        Event.subscriber_id == sub.id,
        Event.sequence_id == seq.id,
        Event.kind == EventKind.CONFIRMATION_SENT,
    )
    return s.scalar(sent.limit(1)) is not None


def add_one(
    slug: str,
    email: str,
    *,
    first_name: str | None = None,
    timezone: str | None = None,
    confirmed: bool = False,
) -> OperatorAdd:
    """`subscribers add`: add one person and, when they are left pending, ask them to confirm.

    The confirmation goes out from here, once the add has committed (no worker needed): a
    rolled-back add sends nothing, and a mail error leaves the person added and pending.
    Raises NotFound or NurtureError for an unknown or archived sequence or a bad address.
    """
    with transaction() as s:
        seq = get_sequence(s, slug)
        require_open(seq)
        added = add_by_operator(
            s, email, seq, first_name=first_name, timezone=timezone, confirmed=confirmed
        )
    if added.consent_id is None:
        return added
    try:
        sent = send_confirmation(added.consent_id)
    except MailError as exc:
        return replace(added, asked=Asked.FAILED, mail_error=str(exc))
    return replace(added, asked=Asked.SENT if sent else Asked.NOT_WANTED)


def skipped_message(reason: str) -> str:
    if reason == FORGOTTEN:
        return "skipped: this address asked to be forgotten and may not be added again"
    return (
        f"skipped: this person is {reason}; only they can come back, through the signup "
        "form and its confirmation"
    )
