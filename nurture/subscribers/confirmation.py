"""Double opt-in: the confirmation email, confirming from its link, and what a yes starts.

A signup (web form, or an operator adding someone without --confirmed) records a pending
consent. Its confirmation email carries a link naming that consent and its person
(/confirm/<token>). The link's GET only shows a button, because mail scanners fetch every
link; the POST confirms. Confirming an unconfirmed address confirms it and starts every
sequence waiting for it; a person already confirmed for another sequence confirms this one
sequence only (`enrolling.confirm`, the one rule, also what an operator's --confirmed does,
beside the enrollments it starts). Someone
who left after signing up is never brought back by an old link: only a new signup sends a
new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture import tokens
from nurture.clock import now
from nurture.db import reading, transaction
from nurture.delivery.compose import confirmation_email
from nurture.errors import NotFound, NurtureError
from nurture.events.models import Event, EventKind
from nurture.events.recording import record_event
from nurture.mail.backends import MailBackend, get_backend
from nurture.sequences.archive import require_open
from nurture.sequences.models import Sequence
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.enrolling import confirm
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.rules import left_reason, may_ask_to_confirm
from nurture.subscribers.suppression import is_suppressed

# The confirmation email goes to an address someone typed, perhaps not its owner: however
# many forms, sequences, clients or operators ask, an address gets at most this many a day.
CONFIRMATIONS_PER_DAY = 3

log = logging.getLogger(__name__)


class ConfirmState(StrEnum):
    PENDING = "pending"  # the button is still to be pressed
    CONFIRMED = "confirmed"  # done (now, or before)
    USED = "used"  # confirmed once, but the person has since left: sign up again


# --- the confirmation email -------------------------------------------------------------


def send_confirmation(consent_id: int, backend: MailBackend | None = None) -> bool:
    """Send the confirmation email for one signup. False when it is no longer wanted.

    Mail errors propagate (TransientMailError: the task retries; PermanentMailError: the
    task gives up); nothing is recorded unless the server accepted the message.
    """
    with transaction() as s:
        consent = s.get(Consent, consent_id)
        if consent is None or consent.confirmed_at is not None or consent.sequence_id is None:
            return False
        sub = consent.subscriber
        seq = s.get(Sequence, consent.sequence_id)
        if seq is None or not may_ask_to_confirm(
            sub.status, suppressed=is_suppressed(s, sub.email)
        ):
            return False
        if _asked_today(s, sub) >= CONFIRMATIONS_PER_DAY:
            log.info("confirmation for consent %s not sent: the day's limit", consent_id)
            return False
        msg = confirmation_email(
            seq, public_id=sub.public_id, email=sub.email, consent_id=consent.id
        )
        with backend or get_backend() as b:
            b.send(msg)
        record_event(s, EventKind.CONFIRMATION_SENT, sub, sequence_id=seq.id)
    return True


def _asked_today(s: Session, sub: Subscriber) -> int:
    return len(_asked_since(s, sub))


def _asked_since(s: Session, sub: Subscriber) -> list[datetime]:
    """When each confirmation email of the last day went to this address, oldest first."""
    q = (
        select(Event.created_at)
        .where(
            Event.subscriber_id == sub.id,
            Event.kind == EventKind.CONFIRMATION_SENT,
            Event.created_at > now() - timedelta(days=1),
        )
        .order_by(Event.created_at)
    )
    return list(s.scalars(q))


# --- asking again (`subscribers resend-confirmation`) -------------------------------------


@dataclass(frozen=True)
class AskedAgain:
    slug: str
    sent: bool
    # Not sent, the day's limit reached: when the address may have another one.
    limit_until: datetime | None = None


def ask_again(
    email: str, slug: str | None = None, backend: MailBackend | None = None
) -> AskedAgain:
    """Send the confirmation email again for someone's signup waiting in `slug` (or their one
    waiting signup), within the same daily limit as every other confirmation. Raises
    NurtureError (NotFound) saying why there is nothing to confirm; mail errors propagate."""
    with reading() as s:
        sub = get_subscriber(s, email)
        consent = _waiting_consent(s, sub, slug)
        seq = s.get_one(Sequence, consent.sequence_id)
        require_open(seq)
        asked = _asked_since(s, sub)
        if len(asked) >= CONFIRMATIONS_PER_DAY:
            until = asked[-CONFIRMATIONS_PER_DAY] + timedelta(days=1)
            return AskedAgain(seq.slug, sent=False, limit_until=until)
        consent_id, seq_slug = consent.id, seq.slug
    return AskedAgain(seq_slug, sent=send_confirmation(consent_id, backend))


def _waiting_consent(s: Session, sub: Subscriber, slug: str | None) -> Consent:
    reason = "forgotten" if is_suppressed(s, sub.email) else left_reason(sub.status)
    if reason is not None:
        raise NurtureError(
            f"not sent: this person is {reason}; only they can come back, through the signup "
            "form and its confirmation"
        )
    waiting = select(Enrollment).where(Enrollment.subscriber_id == sub.id)
    if slug is not None:
        seq = get_sequence(s, slug)
        enrollment = s.scalar(waiting.where(Enrollment.sequence_id == seq.id))
        if enrollment is None:
            raise NotFound(f"that address is not in sequence {slug!r}")
        if enrollment.status != EnrollmentStatus.PENDING:
            raise NurtureError(
                f"nothing to confirm: their place in {slug!r} is {enrollment.status}"
            )
        pending = [enrollment]
    else:
        pending = list(s.scalars(waiting.where(Enrollment.status == EnrollmentStatus.PENDING)))
        if not pending:
            raise NurtureError("nothing to confirm: no sequence of theirs waits for their yes")
        if len(pending) > 1:
            slugs = ", ".join(sorted(e.sequence.slug for e in pending))
            raise NurtureError(f"waiting for their yes in {slugs}: say which with --sequence")
    consent = s.scalar(
        select(Consent)
        .where(
            Consent.subscriber_id == sub.id,
            Consent.sequence_id == pending[0].sequence_id,
            Consent.confirmed_at.is_(None),
        )
        .order_by(Consent.id.desc())
        .limit(1)
    )
    if consent is None:
        raise NurtureError("nothing to confirm: no signup of theirs waits for a yes")
    return consent


# --- confirming by token ----------------------------------------------------------------


def consent_for(s: Session, token: str) -> Consent:
    """The consent a confirmation token names, made for the person it names.
    Raises tokens.BadToken."""
    claims = tokens.read(tokens.CONFIRM, token)
    consent = s.get(Consent, claims.ref)
    if consent is None or not claims.names(consent.subscriber.public_id, consent.created_at):
        # Signed by us, but its signup is gone (forgotten), or the number now belongs to
        # someone else's signup: as good as invalid.
        raise tokens.BadToken("this link is not valid")
    return consent


def _state(s: Session, consent: Consent) -> ConfirmState:
    sub = consent.subscriber
    if left_reason(sub.status) is not None:
        # They left after this signup (perhaps from the confirmation email itself): an old
        # link must not bring them back. A new signup sends a new link.
        return ConfirmState.USED
    if consent.confirmed_at is None:
        return ConfirmState.PENDING
    if sub.status == SubscriberStatus.CONFIRMED:
        return ConfirmState.CONFIRMED
    return ConfirmState.USED


def confirmation_state(token: str) -> tuple[ConfirmState, str]:
    """For GET: what the page should say. Changes nothing. Raises tokens.BadToken."""
    with reading() as s:
        consent = consent_for(s, token)
        seq = s.get(Sequence, consent.sequence_id) if consent.sequence_id else None
        return _state(s, consent), seq.name if seq else ""


def confirm_by_token(token: str) -> tuple[ConfirmState, str]:
    """For POST: confirm and enrol. A second press is harmless. Raises tokens.BadToken."""
    with transaction() as s:
        consent = consent_for(s, token)
        seq = s.get(Sequence, consent.sequence_id) if consent.sequence_id else None
        state = _state(s, consent)
        if state != ConfirmState.PENDING:
            return state, seq.name if seq else ""
        confirm(s, consent.subscriber, consent.sequence_id)
        return ConfirmState.CONFIRMED, seq.name if seq else ""
