"""Holding one person's sequence, and letting it go on: `subscribers pause` / `resume`, and
what a reply does when the sequence says `on_reply: pause`.

A reader who writes back ("this is us exactly, can we talk?") is answered by a person; the
automated series must not carry on as if nothing happened. Pausing keeps their place: the
step they would get next stays next, and a send already handed to a worker is taken back
(a worker re-reads the delivery before sending, so it finds nothing to send).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NurtureError
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.schedule import reader_zone, window_of
from nurture.sequences.services import get_sequence, live_steps, step_after
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber


def _enrollments(s: Session, sub: Subscriber, slug: str | None) -> list[Enrollment]:
    if slug is None:
        return list(sub.enrollments)
    seq = get_sequence(s, slug)
    found = [e for e in sub.enrollments if e.sequence_id == seq.id]
    if not found:
        raise NurtureError(f"this person is not in the sequence {slug!r}")
    return found


def pause_enrollment(s: Session, e: Enrollment, *, by: str) -> bool:
    """Hold one enrollment where it is. False if it was not running. Held during the
    reader's break, it stays held after the break (subscribers/breaks.py)."""
    if e.status == EnrollmentStatus.PAUSED and e.paused_until is not None and by != "break":
        e.paused_until = None
        record_event(s, EventKind.PAUSED, e.subscriber, data={"by": by}, sequence_id=e.sequence_id)
        return True
    if e.status != EnrollmentStatus.ACTIVE:
        return False
    in_flight = s.scalar(
        select(Delivery).where(
            Delivery.enrollment_id == e.id, Delivery.status == DeliveryStatus.QUEUED
        )
    )
    if in_flight is not None:
        # Claimed but not sent: the step goes back to being next, and the row goes so the
        # unique (enrollment, step) key lets it be claimed again after the resume.
        e.next_step_id, e.next_due_at = in_flight.step_id, in_flight.due_at
        s.execute(delete(Delivery).where(Delivery.id == in_flight.id))
    e.status = EnrollmentStatus.PAUSED
    record_event(s, EventKind.PAUSED, e.subscriber, data={"by": by}, sequence_id=e.sequence_id)
    return True


def resume_enrollment(s: Session, e: Enrollment, *, by: str) -> bool:
    """Let a held enrollment go on. A step that fell due while it was held goes in the
    reader's next send window, not at once. False if it was not paused."""
    if e.status != EnrollmentStatus.PAUSED:
        return False
    at = now()
    e.paused_until = None
    if e.next_step_id is None:
        nxt = step_after(live_steps(s, e.sequence_id), e.last_step)
        if nxt is None:
            e.status, e.ended_at, e.next_due_at = EnrollmentStatus.COMPLETED, at, None
            record_event(
                s, EventKind.RESUMED, e.subscriber, data={"by": by}, sequence_id=e.sequence_id
            )
            return True
        e.next_step_id = nxt.id
    due = e.next_due_at or at
    if due < at:
        tz = reader_zone(e.subscriber.timezone, e.sequence.config.timezone)
        due = window_of(e.sequence).next_open(at, tz)
    e.status, e.next_due_at = EnrollmentStatus.ACTIVE, due
    record_event(s, EventKind.RESUMED, e.subscriber, data={"by": by}, sequence_id=e.sequence_id)
    return True


def pause(s: Session, sub: Subscriber, slug: str | None = None, *, by: str = "cli") -> int:
    """Pause this person's running sequences (or the one named); returns how many."""
    return sum(pause_enrollment(s, e, by=by) for e in _enrollments(s, sub, slug))


def resume(s: Session, sub: Subscriber, slug: str | None = None, *, by: str = "cli") -> int:
    """Resume this person's paused sequences (or the one named); returns how many."""
    return sum(resume_enrollment(s, e, by=by) for e in _enrollments(s, sub, slug))
