"""Which step an event belongs to: the step it names, else the last email sent to the person
before it. `nurture stats` counts unsubscribes, bookings, bounces, complaints and replies per
step this way, and forgetting a person pins each such event to its step first, so the counts
outlive the person."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.events.models import EventKind
from nurture.sequences.models import Step
from nurture.subscribers.models import Enrollment


def last_sent_step(subscriber_id: Any, at: Any) -> Any:
    return (
        select(Delivery.step_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(
            Enrollment.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at <= at,
        )
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())
        .limit(1)
    )


def attribute_step(s: Session, subscriber_id: int, at: datetime) -> tuple[int, int] | None:
    """(sequence id, step id) of the last email sent to this person at or before `at`."""
    step_id = s.scalar(last_sent_step(subscriber_id, at))
    if step_id is None:
        return None
    step = s.get_one(Step, step_id)
    return step.sequence_id, step.id


# Events counted per step: for the step they name, else the last one sent before them.
ATTRIBUTED: tuple[EventKind, ...] = (
    EventKind.UNSUBSCRIBED,
    EventKind.BOOKED,
    EventKind.BOUNCED,
    EventKind.SOFT_BOUNCED,
    EventKind.COMPLAINED,
    EventKind.REPLIED,
    EventKind.TOOK_BREAK,
)
