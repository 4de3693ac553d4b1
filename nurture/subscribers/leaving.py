"""How a person's mail ends, whatever the reason: every active sequence ends and mail already
claimed for them is cancelled, in the same transaction as the change that ends it. A worker
holding a claimed delivery re-reads the statuses under lock before it sends
(delivery/sending.py), so nothing goes out after the commit.

The reasons live with their promise: unsubscribing (unsubscribe.py), a consult booked
(booking/booked.py), a bounce or a complaint (below, decided by feedback/handling.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.subscribers.models import (
    ENDED,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)


def end_enrollments(s: Session, sub: Subscriber, status: EnrollmentStatus) -> int:
    ended = 0
    t = now()
    for enrollment in sub.enrollments:
        if enrollment.status in ENDED:
            continue
        enrollment.status = status
        enrollment.next_due_at = None
        enrollment.ended_at = t
        ended += 1
    _cancel_queued(s, [e.id for e in sub.enrollments], f"subscriber {status.value}")
    return ended


def end_enrollment(s: Session, enrollment: Enrollment, status: EnrollmentStatus) -> None:
    """One sequence ends for its reader (an operator's remove or move); the others go on."""
    enrollment.status = status
    enrollment.next_due_at = None
    enrollment.ended_at = now()
    _cancel_queued(s, [enrollment.id], f"enrollment {status.value}")


def _cancel_queued(s: Session, ids: list[int], why: str) -> None:
    if ids:
        # Claimed but unsent mail dies here; a worker re-checks status before each send too.
        s.execute(
            update(Delivery)
            .where(Delivery.enrollment_id.in_(ids), Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.CANCELLED, error=why)
        )


def mark_bounced(
    s: Session,
    sub: Subscriber,
    reason: str,
    *,
    data: dict[str, Any] | None = None,
    **ids: int | None,
) -> None:
    sub.status = SubscriberStatus.BOUNCED
    sub.bounced_at = now()
    end_enrollments(s, sub, EnrollmentStatus.BOUNCED)
    record_event(s, EventKind.BOUNCED, sub, data={"reason": reason[:200], **(data or {})}, **ids)


def mark_complained(
    s: Session, sub: Subscriber, *, data: dict[str, Any] | None = None, **ids: int | None
) -> bool:
    """They marked our mail as spam: every sequence ends and they are never mailed again
    (only a fresh signup through the form and its confirmation brings them back).
    Returns False if they already had."""
    if sub.status == SubscriberStatus.COMPLAINED:
        return False
    sub.status = SubscriberStatus.COMPLAINED
    sub.complained_at = now()
    end_enrollments(s, sub, EnrollmentStatus.COMPLAINED)
    record_event(s, EventKind.COMPLAINED, sub, data=data, **ids)
    return True
