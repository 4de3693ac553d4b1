"""What a bounce, a complaint or a reply does: the one place that decides, for the inbox
(`nurture inbox check`) and the provider webhooks alike.

- Hard bounce: the person is `bounced`, their sequences end, queued mail is cancelled.
- Soft bounce: recorded; the person keeps their subscription. Only SOFT_LIMIT soft bounces
  spread over at least SOFT_SPAN (within SOFT_WINDOW) end it: a full mailbox or a
  greylisting server on one day is normal, the same for days on end is not.
- Complaint: the person is `complained`: sequences end and they are never mailed again.
- Reply: the sequence's `on_reply` says what happens to that sequence: pause (default,
  until `subscribers resume`), stop, or continue. The reply's content is never stored.

Every outcome is an Event (kinds "bounced", "soft_bounced", "complained", "replied") with
ids and codes only, written through events.recording.record_event. A notice handled once is
remembered by a hash (mail_feedback_seen), so a second delivery of it changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NurtureError
from nurture.events.models import Event, EventKind
from nurture.events.recording import record_event
from nurture.feedback.classify import Kind, Notice
from nurture.feedback.models import FeedbackSeen
from nurture.mail import verp
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.holding import pause_enrollment
from nurture.subscribers.leaving import mark_bounced, mark_complained
from nurture.subscribers.models import (
    ENDED,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)

log = logging.getLogger(__name__)

SOFT_LIMIT = 3
SOFT_SPAN = timedelta(days=3)
SOFT_WINDOW = timedelta(days=30)
# People in these states get no more mail, so nothing that comes back changes them.
FINAL = {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def first_time(s: Session, source: str, key: str) -> bool:
    """Remember (source, key); False when it was already remembered."""
    if s.get(FeedbackSeen, (source, key)) is not None:
        return False
    try:
        with s.begin_nested():
            s.add(FeedbackSeen(source=source, key=key))
    except IntegrityError:
        return False  # another pass remembered it a moment ago
    return True


def find_delivery(s: Session, notice: Notice) -> Delivery | None:
    """The delivery a notice is about, by its signed VERP tag or our keyed Message-ID."""
    secret = current().settings.secret
    for tag in notice.tags:
        delivery_id = verp.delivery_named(tag)
        d = s.get(Delivery, delivery_id) if delivery_id is not None else None
        if d is not None and verp.is_ours(tag, secret, d.id, d.enrollment.subscriber.public_id):
            return d
    for message_id in notice.message_ids:
        d = s.scalar(
            select(Delivery)
            .where(Delivery.message_id == message_id, Delivery.status == DeliveryStatus.SENT)
            .order_by(Delivery.id.desc())
            .limit(1)
        )
        if d is not None:
            return d
    return None


def _ids(d: Delivery | None) -> dict[str, int | None]:
    if d is None:
        return {}
    return {"delivery_id": d.id, "step_id": d.step_id, "sequence_id": d.enrollment.sequence_id}


def _soft(s: Session, sub: Subscriber, d: Delivery | None, data: dict[str, Any]) -> None:
    record_event(s, EventKind.SOFT_BOUNCED, sub, data=data, **_ids(d))
    s.flush()
    at = now()
    count, first = s.execute(
        select(func.count(), func.min(Event.created_at)).where(
            Event.subscriber_id == sub.id,
            Event.kind == EventKind.SOFT_BOUNCED,
            Event.created_at >= at - SOFT_WINDOW,
        )
    ).one()
    if count >= SOFT_LIMIT and first is not None and at - first >= SOFT_SPAN:
        reason = f"{count} soft bounces in {(at - first).days} days"
        mark_bounced(s, sub, reason, data={**data, "type": "soft", "count": count}, **_ids(d))


def _stop(s: Session, e: Enrollment) -> None:
    if e.status in ENDED:
        return
    e.status, e.next_due_at, e.ended_at = EnrollmentStatus.CANCELLED, None, now()
    s.execute(
        update(Delivery)
        .where(Delivery.enrollment_id == e.id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED, error="reader replied")
    )


def _reply(s: Session, sub: Subscriber, d: Delivery, source: str) -> None:
    e = d.enrollment
    wanted = e.sequence.config.on_reply
    outcome = "none"
    if wanted == "pause" and e.status == EnrollmentStatus.ACTIVE:
        outcome = "paused"
    elif wanted == "stop" and e.status not in ENDED:
        outcome = "stopped"
    elif wanted == "continue":
        outcome = "continued"
    record_event(s, EventKind.REPLIED, sub, data={"source": source, "action": outcome}, **_ids(d))
    if outcome == "paused":
        pause_enrollment(s, e, by="reply")
    elif outcome == "stopped":
        _stop(s, e)


def apply(s: Session, notice: Notice, source: str, *, email: str | None = None) -> bool:
    """Act on one notice. `email` may name the person only when an authenticated provider
    says so (a webhook); a message in the inbox is matched by tag or Message-ID alone.
    Returns False when it names nobody we know."""
    if notice.kind not in {Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE, Kind.COMPLAINT, Kind.REPLY}:
        return True
    d = find_delivery(s, notice)
    sub: Subscriber | None = d.enrollment.subscriber if d is not None else None
    if sub is None and email:
        try:
            sub = find_subscriber(s, email)
        except NurtureError:
            sub = None
    if sub is None:
        return False
    data: dict[str, Any] = {"source": source}
    if notice.status:
        data["status"] = notice.status
    if notice.kind == Kind.REPLY:
        if d is not None:
            _reply(s, sub, d, source)
        return d is not None
    if sub.status in FINAL:
        return True  # already ended for good; nothing more to do
    if notice.kind == Kind.COMPLAINT:
        mark_complained(s, sub, data=data, **_ids(d))
    elif notice.kind == Kind.HARD_BOUNCE:
        reason = f"hard bounce {notice.status}".strip()
        mark_bounced(s, sub, reason, data={**data, "type": "hard"}, **_ids(d))
    else:
        _soft(s, sub, d, {**data, "type": "soft"})
    log.info("%s from %s applied to subscriber %s", notice.kind.value, source, sub.id)
    return True
