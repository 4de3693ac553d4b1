"""Sequences: look them up, their live steps in order, pause and resume. Applying a folder
(the live-edit rules) is nurture/sequences/editing.py; due times, schedule.py."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.errors import NotFound
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import reader_zone, window_of
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber


def get_sequence(s: Session, slug: str) -> Sequence:
    seq = s.scalar(select(Sequence).where(Sequence.slug == slug))
    if seq is None:
        raise NotFound(f"no sequence {slug!r} (see `nurture sequences list`)")
    return seq


def open_forms(s: Session) -> list[Sequence]:
    """The sequences whose signup form takes readers: all but the archived (a paused one
    still takes signups, who wait with the rest), by slug."""
    return list(
        s.scalars(select(Sequence).where(Sequence.archived_at.is_(None)).order_by(Sequence.slug))
    )


def live_steps(s: Session, sequence_id: int) -> list[Step]:
    return list(
        s.scalars(
            select(Step)
            .where(Step.sequence_id == sequence_id, Step.removed_at.is_(None))
            .order_by(Step.position)
        )
    )


def step_after(steps: list[Step], current: Step | None) -> Step | None:
    """The step that follows `current` in the sequence's order (the first if None)."""
    if current is None:
        return steps[0] if steps else None
    return next((st for st in steps if st.position > current.position), None)


def set_status(s: Session, slug: str, status: SequenceStatus) -> Sequence:
    seq = get_sequence(s, slug)
    seq.status = status
    return seq


def resume(s: Session, slug: str) -> int:
    """Resume a paused sequence. Sends that fell due while it was paused are spread back
    into each subscriber's next open window instead of going out in one burst; returns how
    many were re-timed."""
    seq = set_status(s, slug, SequenceStatus.ACTIVE)
    at = now()
    window = window_of(seq)
    default_tz = seq.config.timezone
    overdue = s.execute(
        select(Enrollment.id, Subscriber.timezone)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            Enrollment.sequence_id == seq.id,
            Enrollment.status == EnrollmentStatus.ACTIVE,
            Enrollment.next_due_at < at,
        )
    ).all()
    values = [
        {"id": row.id, "next_due_at": window.next_open(at, reader_zone(row.timezone, default_tz))}
        for row in overdue
    ]
    for i in range(0, len(values), 1000):
        s.execute(update(Enrollment), values[i : i + 1000])
    return len(values)
