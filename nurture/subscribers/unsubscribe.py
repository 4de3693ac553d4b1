"""How unsubscribing works: the one file to read.

The way out, in every email: a visible link in the footer (content/render.py puts it there)
and the List-Unsubscribe and List-Unsubscribe-Post headers of RFC 8058 (mail/message.py),
all pointing at /unsubscribe/<token>, built by delivery/compose.py `unsubscribe_url`. The
token names the person, not the email, and never expires (tokens.py): an old email must
always let its reader go.

Pressing it: GET /unsubscribe/<token> only shows a button, because mail scanners fetch
every link (and send HEAD); POST unsubscribes, from the page or from a mail client's
one-click (web/views.py, thin). The operator does the same with `nurture subscribers
unsubscribe EMAIL` (cli/subscribers.py, thin). All three end in unsubscribe() below.

What it does, in one transaction: the person becomes `unsubscribed`, every enrollment ends,
every queued delivery is cancelled, and an `unsubscribed` event is recorded (which the
event-webhooks outbox announces, subscribers/event_webhooks.py). A worker already holding a
claimed delivery re-reads the statuses under lock before it sends (delivery/sending.py), so
nothing goes out after the commit.

Coming back: no operator and no import can put them back (subscribers/rules.py,
subscribers/operator.py); only their own new signup and its confirmation can.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from nurture import tokens
from nurture.clock import now
from nurture.db import transaction
from nurture.subscribers.models import EnrollmentStatus, Event, Subscriber, SubscriberStatus
from nurture.subscribers.services import end_enrollments, get_subscriber


def unsubscribe(s: Session, sub: Subscriber, how: str = "link") -> bool:
    """Returns False if they were already unsubscribed (a second click is harmless)."""
    if sub.status == SubscriberStatus.UNSUBSCRIBED:
        return False
    sub.status = SubscriberStatus.UNSUBSCRIBED
    sub.unsubscribed_at = now()
    end_enrollments(s, sub, EnrollmentStatus.UNSUBSCRIBED)
    s.add(Event(kind="unsubscribed", subscriber_id=sub.id, data={"how": how}))
    return True


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


def unsubscribe_by_email(email: str, how: str = "cli") -> bool:
    """The operator's way. Raises NotFound for an unknown address; False if already done."""
    with transaction() as s:
        return unsubscribe(s, get_subscriber(s, email), how=how)
