"""Signing up: what the signup page says, checking a posted form, recording the signup.

The signup answer never depends on whether an address was known (no enumeration): every
branch below ends in the same "check your inbox" page, and the only observable difference,
a confirmation email, goes to the address's owner. The confirmation is handed to a worker
only after the signup committed, so a rolled-back signup sends nothing. The email itself and
confirming: subscribers/confirmation.py. The form's token and reading the request:
web/forms.py.

Where a signup came from (Consent.article): the `?article=` parameter of the signup or
embed page URL (the page keeps it in a hidden field), else, for /embed, the Referer of the
iframe request (the article page around it). Only scheme, host and path are stored.
The client address is stored as a keyed hash only (client_hash), never raw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import reading, transaction
from nurture.errors import NurtureError
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import is_valid_timezone
from nurture.sequences.services import get_sequence, live_steps
from nurture.sequences.settings import clicks_tracked
from nurture.subscribers.addresses import email_index, normalize_email
from nurture.subscribers.enrolling import add_subscriber, latest_consent_id
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.suppression import is_suppressed

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


def consent_text(seq: Sequence) -> str:
    return CONSENT_TEXT.format(name=seq.name, practice=seq.config.practice)


def client_hash(address: str | None) -> str | None:
    # Keyed, so the stored value proves "same client as" without revealing the address.
    return current().data_keys.index(address, "client") if address else None


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
    with reading() as s:
        seq = get_sequence(s, slug)
        cfg = seq.config
        return SignupPage(
            slug=seq.slug,
            name=seq.name,
            practice=cfg.practice,
            emails=len(live_steps(s, seq.id)),
            consent=consent_text(seq),
            clicks_tracked=clicks_tracked(seq.config),
            # Only a discreet sequence promises a discreet sender: the page must say what
            # the inbox will really show.
            discreet_from=cfg.inbox_from_name if cfg.is_discreet else None,
        )


# A signup handed to a worker travels sealed: the broker (Redis keys, the embedded broker's
# rows, `celery inspect`, Flower) sees ciphertext, never the address or the name.
_TASK_PLACE = "task.sign_up"


def seal_form(form: SignupForm) -> str:
    return current().data_keys.seal(json.dumps(asdict(form)), _TASK_PLACE)


def open_form(sealed: str) -> SignupForm:
    return SignupForm(**json.loads(current().data_keys.unseal(sealed, _TASK_PLACE)))


def _checked(slug: str, form: SignupForm) -> SignupForm | None:
    """The form with its address normalised and its client reduced to a keyed hash, or None
    when the honeypot was filled. Raises InvalidSignup for a malformed address and NotFound
    for an unknown sequence. Reads no subscriber."""
    try:
        address = normalize_email(form.email)
    except NurtureError:
        raise InvalidSignup("Please check the email address: it does not look complete.") from None
    with reading() as s:
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


def accept(slug: str, form: SignupForm) -> SignupForm | None:
    """What the web view does before answering: check the form alone, never the people.

    Returns the form to record later, or None when the honeypot was filled. It reads no
    subscriber, so the answer takes the same time for a known address as for a new one;
    the lookup and the insert happen in sign_up(), after the answer is on its way.
    """
    return _checked(slug, form)


def sign_up(slug: str, form: SignupForm, enqueue: Callable[[int], None]) -> None:
    """Record the signup and, after commit, hand its confirmation email to `enqueue`.

    Raises InvalidSignup for a malformed address and NotFound for an unknown sequence;
    every other outcome (new, pending, confirmed, unsubscribed, forgotten, honeypot) is
    silent on purpose.
    """
    checked = _checked(slug, form)
    if checked is None:
        return
    with transaction() as s:
        consent_id = _sign_up(s, get_sequence(s, slug), checked.email, checked)
    if consent_id is not None:
        try:
            enqueue(consent_id)
        except Exception:
            # The signup stands; the person can send the form again. Never log the address.
            log.exception("could not queue the confirmation for consent %s", consent_id)


def _sign_up(s: Session, seq: Sequence, address: str, form: SignupForm) -> int | None:
    if is_suppressed(s, address):
        return None
    sub = s.scalar(select(Subscriber).where(Subscriber.email_index == email_index(address)))
    timezone = form.timezone if form.timezone and is_valid_timezone(form.timezone) else None
    first_name = form.first_name
    if sub is not None:
        if _already_has_it(s, sub, seq) or _asked_moments_ago(s, sub, seq):
            return None
        if sub.status == SubscriberStatus.CONFIRMED:
            # A stranger's form must not rename someone already receiving mail.
            first_name, timezone = None, None
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
        client_hash=form.client_digest,
        await_confirmation=True,
    )
    consent_id = latest_consent_id(s, sub, seq)
    record_event(s, EventKind.SIGNED_UP, sub, sequence_id=seq.id)
    return consent_id


# A confirmed person in one of these needs nothing from a new signup for the same sequence.
_HAS_IT = frozenset(
    {
        EnrollmentStatus.ACTIVE,
        EnrollmentStatus.PAUSED,
        EnrollmentStatus.COMPLETED,
        EnrollmentStatus.BOOKED,
    }
)


def _already_has_it(s: Session, sub: Subscriber, seq: Sequence) -> bool:
    if sub.status != SubscriberStatus.CONFIRMED:
        return False
    enrollment = s.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
        )
    )
    return enrollment is not None and enrollment.status in _HAS_IT


def _asked_moments_ago(s: Session, sub: Subscriber, seq: Sequence) -> bool:
    """An unconfirmed web signup for this sequence is younger than RESEND_AFTER: its
    confirmation is already on its way, and no second one follows."""
    recent = s.scalar(
        select(Consent.id).where(
            Consent.subscriber_id == sub.id,
            Consent.sequence_id == seq.id,
            Consent.source == WEB_SOURCE,
            Consent.confirmed_at.is_(None),
            Consent.created_at > now() - RESEND_AFTER,
        )
    )
    return recent is not None
