"""Stop when a consult is booked: the one rule, for the booking webhook (booking/service.py)
and `nurture subscribers booked EMAIL` alike. Every active sequence of the person ends and
mail already claimed for them is cancelled (subscribers/leaving.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.subscribers.leaving import end_enrollments
from nurture.subscribers.models import EnrollmentStatus, Subscriber


def mark_booked(s: Session, sub: Subscriber, source: str = "cli") -> bool:
    """Returns False if they had booked already."""
    if sub.booked_at is not None:
        return False
    sub.booked_at = now()
    end_enrollments(s, sub, EnrollmentStatus.BOOKED)
    record_event(s, EventKind.BOOKED, sub, data={"source": source})
    return True
