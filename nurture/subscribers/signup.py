"""The subscriber's side of the web: signing up, double opt-in, unsubscribing by link.

The signup answer never depends on whether an address was known (no enumeration): every
branch below ends in the same "check your inbox" page, and the only observable difference,
a confirmation email, goes to the address's owner. The confirmation is handed to a worker
only after the signup committed, so a rolled-back signup sends nothing.

Where a signup came from (Consent.article): the `?article=` parameter of the signup or
embed page URL (the page keeps it in a hidden field), else, for /embed, the Referer of the
iframe request (the article page around it). Only scheme, host and path are stored.
The client address is stored as a keyed hash only (client_hash), never raw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture import tokens
from nurture.clock import now
from nurture.db import transaction
from nurture.delivery.compose import confirmation_email
from nurture.errors import NurtureError
from nurture.mail.backends import MailBackend, get_backend
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import is_valid_timezone
from nurture.sequences.services import get_sequence
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.rules import left_reason, may_ask_to_confirm
from nurture.subscribers.services import (
    add_subscriber,
    confirm,
    email_hash,
    is_suppressed,
    latest_consent_id,
    normalize_email,
    record_event,
    start_enrollment,
    unsubscribe,
)

log = logging.getLogger(__name__)

# The words next to the button, stored with every consent as shown. Change the text, bump
# the version: old consents keep the words their person actually saw.
CONSENT_VERSION = "web-2026-11-1"
CONSENT_TEXT = (
    "Send me the free email series “{name}” from {practice}. Each email ends with an "
    "invitation to book a free consult. I can unsubscribe at any time with one click, "
    "and my address is never shared."
)
# A second signup for the same address within this time sends no second email: the form
# must not become a way to flood someone's inbox.
RESEND_AFTER = timedelta(minutes=10)
WEB_SOURCE = "web-form"


class InvalidSignup(NurtureError):
    """The form itself is wrong (the email address); shown next to the field."""


class ConfirmState(StrEnum):
    PENDING = "pending"  # the button is still to be pressed
    CONFIRMED = "confirmed"  # done (now, or before)
    USED = "used"  # confirmed once, but the person has since left: sign up again


def consent_text(seq: Sequence) -> str:
    return CONSENT_TEXT.format(name=seq.name, practice=seq.config.practice)


def client_hash(address: str | None) -> str | None:
    # Keyed, so the stored value proves "same client as" without revealing the address.
    return email_hash(f"client:{address}") if address else None


def clean_article(raw: str | None) -> str | None:
    """Keep only where the form was: scheme, host and path of a URL, or a bare path.
    Query strings and fragments are dropped (they can carry personal data)."""
    if not raw:
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme and parts.scheme not in {"http", "https"}:
        return None
    where = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path
    where = "".join(ch for ch in where if ch.isprintable())[:500]
    return where or None


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str | None = None
    timezone: str | None = None
    article: str | None = None
    honeypot: str = ""
    client_address: str | None = None
    client_digest: str | None = None  # client_hash(client_address), when already taken


@dataclass(frozen=True)
class SignupPage:
    """What the signup page says about a sequence, read once per request."""

    slug: str
    name: str
    practice: str
    emails: int
    consent: str
    clicks_tracked: bool
    discreet_from: str | None  # the neutral sender name, when discreet mode is on


def signup_page(slug: str) -> SignupPage:
    """Raises NotFound for an unknown sequence."""
    from nurture.delivery.links import clicks_tracked
    from nurture.sequences.services import live_steps

    with transaction() as s:
        seq = get_sequence(s, slug)
        cfg = seq.config
        return SignupPage(
            slug=seq.slug,
            name=seq.name,
            practice=cfg.practice,
            emails=len(live_steps(s, seq.id)),
            consent=consent_text(seq),
            clicks_tracked=clicks_tracked(seq),
            # Only a discreet sequence promises a discreet sender: the page must say what
            # the inbox will really show.
            discreet_from=cfg.inbox_from_name if cfg.is_discreet else None,
        )


def form_token(slug: str) -> str:
    return tokens.make(tokens.FORM, {"q": slug})


def check_form_token(slug: str, token: str | None) -> bool:
    if not token:
        return False
    try:
        data = tokens.read(tokens.FORM, token)
    except tokens.BadToken:
        return False
    return isinstance(data, dict) and data.get("q") == slug


def accept(slug: str, form: SignupForm) -> SignupForm | None:
    """What the web view does before answering: check the form alone, never the people.

    Returns the form to record later (address normalised, client address reduced to its
    hash), or None when the honeypot was filled. Raises InvalidSignup for a malformed
    address and NotFound for an unknown sequence. It reads no subscriber, so the answer
    takes the same time for a known address as for a new one; the lookup and the insert
    happen in sign_up(), in a task, after the answer is on its way.
    """
    try:
        address = normalize_email(form.email)
    except NurtureError:
        raise InvalidSignup("Please check the email address: it does not look complete.") from None
    with transaction() as s:
        get_sequence(s, slug)
    if form.honeypot:
        log.info("signup for %s dropped: honeypot filled", slug)
        return None
    return replace(
        form,
        email=address,
        client_address=None,
        client_digest=form.client_digest or client_hash(form.client_address),
    )


def sign_up(slug: str, form: SignupForm, enqueue: Callable[[int], None]) -> None:
    """Record the signup and, after commit, hand its confirmation email to `enqueue`.

    Raises InvalidSignup for a malformed address and NotFound for an unknown sequence;
    every other outcome (new, pending, confirmed, unsubscribed, forgotten, honeypot) is
    silent on purpose.
    """
    try:
        address = normalize_email(form.email)
    except NurtureError:
        raise InvalidSignup("Please check the email address: it does not look complete.") from None
    with transaction() as s:
        seq = get_sequence(s, slug)
        if form.honeypot:
            log.info("signup for %s dropped: honeypot filled", slug)
            return
        consent_id = _sign_up(s, seq, address, form)
    if consent_id is not None:
        try:
            enqueue(consent_id)
        except Exception:
            # The signup stands; the person can send the form again. Never log the address.
            log.exception("could not queue the confirmation for consent %s", consent_id)


def _sign_up(s: Session, seq: Sequence, address: str, form: SignupForm) -> int | None:
    if is_suppressed(s, address):
        return None
    sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
    timezone = form.timezone if form.timezone and is_valid_timezone(form.timezone) else None
    first_name = form.first_name
    if sub is not None:
        enrollment = s.scalar(
            select(Enrollment).where(
                Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
            )
        )
        if sub.status == SubscriberStatus.CONFIRMED:
            if enrollment is not None and enrollment.status in {
                EnrollmentStatus.ACTIVE,
                EnrollmentStatus.PAUSED,
                EnrollmentStatus.COMPLETED,
                EnrollmentStatus.BOOKED,
            }:
                return None
            # A stranger's form must not rename someone already receiving mail.
            first_name, timezone = None, None
        recent = s.scalar(
            select(Consent.id).where(
                Consent.subscriber_id == sub.id,
                Consent.sequence_id == seq.id,
                Consent.source == WEB_SOURCE,
                Consent.confirmed_at.is_(None),
                Consent.created_at > now() - RESEND_AFTER,
            )
        )
        if recent is not None:
            return None
    sub = add_subscriber(
        s,
        address,
        seq,
        first_name=first_name,
        timezone=timezone,
        source=WEB_SOURCE,
        consent_text=consent_text(seq),
        consent_version=CONSENT_VERSION,
        article=clean_article(form.article),
        client_hash=form.client_digest or client_hash(form.client_address),
        await_confirmation=True,
    )
    consent_id = latest_consent_id(s, sub, seq)
    record_event(s, "signed_up", sub, sequence_id=seq.id)
    return consent_id


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
        msg = confirmation_email(seq, subscriber_id=sub.id, email=sub.email, consent_id=consent.id)
        with backend or get_backend() as b:
            b.send(msg)
        record_event(s, "confirmation_sent", sub, sequence_id=seq.id)
    return True


# --- confirming and unsubscribing by token -------------------------------------------------


def _consent_for(s: Session, token: str) -> Consent:
    data = tokens.read(tokens.CONFIRM, token)
    consent_id = data.get("c") if isinstance(data, dict) else None
    consent = s.get(Consent, consent_id) if isinstance(consent_id, int) else None
    if consent is None:
        # Signed by us, but its signup is gone (forgotten): as good as invalid.
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
    with transaction() as s:
        consent = _consent_for(s, token)
        seq = s.get(Sequence, consent.sequence_id) if consent.sequence_id else None
        return _state(s, consent), seq.name if seq else ""


def confirm_by_token(token: str) -> tuple[ConfirmState, str]:
    """For POST: confirm and enrol. A second press is harmless. Raises tokens.BadToken."""
    with transaction() as s:
        consent = _consent_for(s, token)
        seq = s.get(Sequence, consent.sequence_id) if consent.sequence_id else None
        state = _state(s, consent)
        if state != ConfirmState.PENDING:
            return state, seq.name if seq else ""
        sub = consent.subscriber
        if sub.status != SubscriberStatus.CONFIRMED:
            # Confirms the address and starts every enrollment waiting for it.
            confirm(s, sub)
        else:
            # Already confirmed for another sequence: this yes starts this one.
            consent.confirmed_at = now()
            for enrollment in sub.enrollments:
                if (
                    enrollment.sequence_id == consent.sequence_id
                    and enrollment.status == EnrollmentStatus.PENDING
                ):
                    start_enrollment(s, enrollment)
            record_event(s, "confirmed", sub, sequence_id=consent.sequence_id)
        return ConfirmState.CONFIRMED, seq.name if seq else ""


def check_unsubscribe_token(token: str) -> int:
    """The subscriber id an unsubscribe token names. Raises tokens.BadToken."""
    data = tokens.read(tokens.UNSUBSCRIBE, token)
    sub_id = data.get("s") if isinstance(data, dict) else None
    if not isinstance(sub_id, int):
        raise tokens.BadToken("this link is not valid")
    return sub_id


def unsubscribe_by_token(token: str, how: str) -> None:
    """Unsubscribe whoever the token names; a second time, or a forgotten person, is a no-op."""
    sub_id = check_unsubscribe_token(token)
    with transaction() as s:
        sub = s.get(Subscriber, sub_id)
        if sub is not None:
            unsubscribe(s, sub, how=how)
