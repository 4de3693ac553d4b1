"""How a failed delivery is retried: `nurture deliveries retry ID` or `--all-failed`.

A failed send goes back to QUEUED with an expired lease, so the dispatcher's reclaim pass
hands it to a worker, which checks again whether the person may still be mailed. Retrying
is refused up front for anyone the worker would skip anyway (unsubscribed, bounced for
good, booked, forgotten), so the operator hears it now.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NotFound, NurtureError
from nurture.events.models import Event, EventKind
from nurture.subscribers.rules import why_not_mail


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
