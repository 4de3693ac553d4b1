"""How a failed delivery is retried: by itself, after a passing failure (next_try), or by
the operator, after a final one (`nurture deliveries retry ID` or `--all-failed`).

A passing failure (a 4xx, a lost connection) keeps the delivery QUEUED with its lease moved
to the next try, so the dispatcher's reclaim pass hands it out again then; backoff doubles
from a minute to an hour, and after MAX_ATTEMPTS tries the delivery fails.

A failed send goes back to QUEUED with an expired lease, so the dispatcher's reclaim pass
hands it to a worker, which checks again whether the person may still be mailed. Retrying
is refused up front for anyone the worker would skip anyway (unsubscribed, bounced for
good, booked, forgotten), so the operator hears it now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NotFound, NurtureError
from nurture.events.models import Event, EventKind
from nurture.subscribers.rules import why_not_mail

MAX_ATTEMPTS = 8


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def next_try(attempts: int, at: datetime) -> datetime | None:
    """When a delivery that failed for a passing reason `attempts` times goes again; None
    when it has had its tries."""
    return None if attempts >= MAX_ATTEMPTS else at + backoff(attempts)


def _not_retryable(d: Delivery) -> str | None:
    e = d.enrollment
    if d.status != DeliveryStatus.FAILED:
        return f"delivery {d.id} is {d.status}, not failed"
    why_not = why_not_mail(
        e.subscriber.status, e.status, step_removed=d.step.removed_at is not None
    )
    if why_not is not None:
        # "subscriber bounced" reads "the subscriber is bounced"
        return f"delivery {d.id}: the {why_not.replace(' ', ' is ', 1)}"
    return None


def retry_delivery(s: Session, delivery_id: int) -> None:
    """Put a failed delivery back in the queue; the next dispatch pass sends it."""
    d = s.get(Delivery, delivery_id)
    if d is None:
        raise NotFound(f"no delivery {delivery_id} (see `nurture deliveries list`)")
    why = _not_retryable(d)
    if why:
        raise NurtureError(f"cannot retry: {why}")
    _requeue(s, d)


def retry_all_failed(s: Session) -> tuple[int, int]:
    """(requeued, left alone): failed sends to people who may still be mailed go back."""
    requeued = skipped = 0
    for d in s.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED)):
        if _not_retryable(d):
            skipped += 1
            continue
        _requeue(s, d)
        requeued += 1
    return requeued, skipped


def _requeue(s: Session, d: Delivery) -> None:
    d.status = DeliveryStatus.QUEUED
    # A lease already run out: the dispatcher's reclaim pass hands it to a worker.
    d.lease_until = now() - timedelta(seconds=1)
    d.attempts = 0
    d.error = None
    s.add(Event(kind=EventKind.RETRIED, subscriber_id=d.enrollment.subscriber_id, delivery_id=d.id))
