"""Sending a batch of claimed deliveries over one mail connection.

For each delivery, in one transaction: lock it (and its enrollment and subscriber), re-check
that mail is still wanted, send, then mark it SENT and advance the enrollment. The commit
comes only after the server accepted the message, so a crash before it leaves the delivery
QUEUED and its lease brings it back: a step is never lost. The price is that a crash in the
instant between the server's "250 OK" and our commit sends that one message again; its
Message-ID is stable, so mail clients show it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from nurture.clock import now
from nurture.db import session
from nurture.delivery.compose import compose
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.mail.backends import MailBackend, PermanentMailError, TransientMailError, get_backend
from nurture.sequences.models import SequenceStatus
from nurture.sequences.schedule import zone
from nurture.sequences.services import due_for, live_steps, step_after, window_of
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from nurture.subscribers.services import mark_bounced

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


@dataclass
class BatchResult:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # cancelled or put back for later
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # transient failure: the lease brings it back


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def _lock(s: Session, delivery_id: int) -> Delivery | None:
    q = (
        select(Delivery)
        .join(Delivery.enrollment)
        .join(Enrollment.subscriber)
        .join(Enrollment.sequence)
        .join(Delivery.step)
        .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.QUEUED)
        .options(
            contains_eager(Delivery.enrollment).contains_eager(Enrollment.subscriber),
            contains_eager(Delivery.enrollment).contains_eager(Enrollment.sequence),
            contains_eager(Delivery.step),
        )
    )
    if s.get_bind().dialect.name == "postgresql":
        # Lock the rows an unsubscribe or booking would change: either it commits first and
        # we see it below, or it waits until this send is recorded.
        q = q.with_for_update(of=[Delivery, Enrollment, Subscriber])
    return s.scalar(q)


def _still_wanted(s: Session, d: Delivery) -> str | None:
    """Why this delivery must not go out now, or None if it should."""
    e = d.enrollment
    if e.subscriber.status != SubscriberStatus.CONFIRMED:
        return f"subscriber {e.subscriber.status}"
    if e.status != EnrollmentStatus.ACTIVE:
        return f"enrollment {e.status}"
    if d.step.removed_at is not None:
        return "step removed"
    return None


def _put_back(s: Session, d: Delivery, reason: str, at: datetime) -> None:
    """Not now, but later: the step stays due for this enrollment (paused or out of window)."""
    e = d.enrollment
    seq = e.sequence
    e.next_step_id = d.step_id
    if reason == "sequence paused":
        e.next_due_at = d.due_at
    else:
        tz = zone(e.subscriber.timezone, seq.settings.get("timezone", "UTC"))
        e.next_due_at = window_of(seq).next_open(at, tz)
    # The delivery row goes so the step can be claimed again under the unique key.
    s.delete(d)


def _immediate_first(d: Delivery) -> bool:
    window = d.enrollment.sequence.settings.get("send_window") or {}
    return (
        d.enrollment.last_step_id is None
        and d.step.delay_seconds == 0
        and bool(window.get("first_step_immediately", True))
    )


def _advance(s: Session, d: Delivery, at: datetime) -> None:
    e = d.enrollment
    e.last_step_id = d.step_id
    e.last_sent_at = at
    nxt = step_after(live_steps(s, e.sequence_id), d.step)
    if nxt is None:
        e.status = EnrollmentStatus.COMPLETED
        e.ended_at = at
        e.next_step_id = None
        e.next_due_at = None
    else:
        e.next_step_id = nxt.id
        e.next_due_at = due_for(e.sequence, e.subscriber.timezone, at, nxt.delay_seconds)


def send_one(s: Session, backend: MailBackend, delivery_id: int, result: BatchResult) -> None:
    d = _lock(s, delivery_id)
    if d is None:  # already sent, cancelled, or taken by another worker
        result.skipped.append(delivery_id)
        return
    e = d.enrollment
    why_not = _still_wanted(s, d)
    if why_not is not None:
        d.status = DeliveryStatus.CANCELLED
        d.error = why_not
        result.skipped.append(delivery_id)
        return
    seq = e.sequence
    tz = zone(e.subscriber.timezone, seq.settings.get("timezone", "UTC"))
    # One instant for the window check, the Date header and sent_at, so they cannot disagree.
    at = now()
    if seq.status == SequenceStatus.PAUSED:
        _put_back(s, d, "sequence paused", at)
        result.skipped.append(delivery_id)
        return
    if not window_of(seq).contains(at, tz) and not _immediate_first(d):
        # A backlog that outlives the window waits for the next one: nobody gets a 3 a.m. email.
        _put_back(s, d, "window closed", at)
        result.skipped.append(delivery_id)
        return
    msg = compose(
        seq,
        d.step,
        subscriber_id=e.subscriber.id,
        email=e.subscriber.email,
        first_name=e.subscriber.first_name,
        date=at,
    )
    d.attempts += 1
    backend.send(msg)  # raises on failure; the caller rolls this transaction back
    d.status = DeliveryStatus.SENT
    d.sent_at = at
    d.message_id = msg["Message-ID"]
    d.error = None
    _advance(s, d, at)
    result.sent.append(delivery_id)


def _record_failure(delivery_id: int, exc: Exception, permanent: bool, result: BatchResult) -> None:
    with session() as s, s.begin():
        d = s.get(Delivery, delivery_id)
        if d is None or d.status != DeliveryStatus.QUEUED:
            return
        d.attempts += 1
        d.error = str(exc)[:500]
        if permanent or d.attempts >= MAX_ATTEMPTS:
            d.status = DeliveryStatus.FAILED
            if permanent:
                mark_bounced(s, d.enrollment.subscriber, str(exc))
            result.failed.append(delivery_id)
        else:
            d.lease_until = now() + backoff(d.attempts)
            result.retry.append(delivery_id)
    log.warning("delivery %s %s: %s", delivery_id, "failed" if permanent else "will retry", exc)


def send_batch(delivery_ids: list[int], backend: MailBackend | None = None) -> BatchResult:
    result = BatchResult()
    backend = backend or get_backend()
    pending = list(delivery_ids)
    try:
        with backend:
            while pending:
                delivery_id = pending.pop(0)
                try:
                    with session() as s, s.begin():
                        send_one(s, backend, delivery_id, result)
                except PermanentMailError as exc:
                    _record_failure(delivery_id, exc, True, result)
                except TransientMailError as exc:
                    _record_failure(delivery_id, exc, False, result)
    except TransientMailError as exc:
        # No connection at all: every unsent delivery waits for its backoff.
        for delivery_id in pending:
            _record_failure(delivery_id, exc, False, result)
    log.info(
        "batch done: %d sent, %d skipped, %d failed, %d to retry",
        len(result.sent),
        len(result.skipped),
        len(result.failed),
        len(result.retry),
    )
    return result
