"""How unsubscribing works: the one file to read.

The way out, in every email: a visible link in the footer (content/render.py puts it there)
and the List-Unsubscribe and List-Unsubscribe-Post headers of RFC 8058 (mail/message.py),
all pointing at /unsubscribe/<token>, built by delivery/compose.py `unsubscribe_url`. The
token names the person (their random public id, never a number another person could get
later), not the email, and never expires (tokens.py): an old email must always let its
reader go.

Pressing it: GET /unsubscribe/<token> only shows a button, because mail scanners fetch
every link (and send HEAD); POST unsubscribes, from the page or from a mail client's
one-click (web/views.py, thin). The operator does the same with `nurture subscribers
unsubscribe EMAIL` (cli/subscribers.py, thin). All three end in unsubscribe() below.

What it does, in one transaction: the person becomes `unsubscribed`, every enrollment ends,
every queued delivery is cancelled, and an `unsubscribed` event is recorded (which the
event-webhooks outbox announces, events/outbox.py). A worker already holding a
claimed delivery re-reads the statuses under lock before it sends (delivery/sending.py), so
nothing goes out after the commit.

Coming back: no operator and no import can put them back (subscribers/rules.py,
subscribers/operator.py); only their own new signup and its confirmation can.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture import tokens
from nurture.clock import now
from nurture.db import transaction
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.leaving import end_enrollments
from nurture.subscribers.models import EnrollmentStatus, Subscriber, SubscriberStatus


def unsubscribe(s: Session, sub: Subscriber, how: str = "link") -> bool:
    """Returns False if they were already unsubscribed (a second click is harmless)."""
    if sub.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    sub.status = SubscriberStatus.UNSUBSCRIBED
    sub.unsubscribed_at = now()
    end_enrollments(s, sub, EnrollmentStatus.UNSUBSCRIBED)
    record_event(s, EventKind.UNSUBSCRIBED, sub, data={"how": how})
    return True


def subscriber_for(s: Session, claims: tokens.Claims) -> Subscriber | None:
    """Who an unsubscribe token names: the person with its public id, or (a link from before
    tokens named people) the row with its number, if that row is as old as the link. None
    when they were forgotten: nobody to unsubscribe, and never somebody else."""
    if claims.person is not None:
        return s.scalar(select(Subscriber).where(Subscriber.public_id == claims.person))
    sub = s.get(Subscriber, claims.ref)
    return sub if sub is not None and claims.names(sub.public_id, sub.created_at) else None


def unsubscribe_by_token(token: str, how: str) -> None:
    """Unsubscribe whoever the token names; a second time, or a forgotten person, is a no-op.
    Raises tokens.BadToken."""
    claims = tokens.read(tokens.UNSUBSCRIBE, token)
    with transaction() as s:
        sub = subscriber_for(s, claims)
        if sub is not None:
            unsubscribe(s, sub, how=how)


def unsubscribe_by_email(email: str, how: str = "cli") -> bool:
    """The operator's way. Raises NotFound for an unknown address; False if already done."""
    with transaction() as s:
        return unsubscribe(s, get_subscriber(s, email), how=how)
