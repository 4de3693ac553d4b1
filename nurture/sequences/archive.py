"""Closing a sequence for good: `nurture sequences archive SLUG [--stop]`.

Pause and archive answer different questions. Pause holds *sending* for a while (a typo to
fix, a holiday) and the form stays open: people who sign up meanwhile confirm and simply
wait for `resume`. Archive closes the *form*: /subscribe and /embed answer 410 Gone with a
kind page, and no one new can be added. The people already in it receive the rest of their
emails, unless --stop ends their enrollments too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.db import chunks, reading
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NurtureError
from nurture.sequences.models import Sequence
from nurture.sequences.services import get_sequence
from nurture.subscribers.models import ENDED, Enrollment, EnrollmentStatus


@dataclass(frozen=True)
class Archived:
    already: bool  # it was archived before this call
    stopped: int  # enrollments ended by --stop
    finishing: int  # enrollments that keep going to their last step


def archive(s: Session, slug: str, *, stop: bool) -> Archived:
    seq = get_sequence(s, slug)
    already = seq.archived_at is not None
    if not already:
        seq.archived_at = now()
    open_ids = list(
        s.scalars(
            select(Enrollment.id).where(
                Enrollment.sequence_id == seq.id, Enrollment.status.not_in(list(ENDED))
            )
        )
    )
    if not stop:
        return Archived(already=already, stopped=0, finishing=len(open_ids))
    for chunk in chunks(open_ids):
        s.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(chunk))
            .values(status=EnrollmentStatus.CANCELLED, next_due_at=None, ended_at=now())
        )
        # Claimed but unsent mail stops here; the worker re-checks the enrollment as well.
        s.execute(
            update(Delivery)
            .where(Delivery.enrollment_id.in_(chunk), Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.CANCELLED, error="sequence archived")
        )
    return Archived(already=already, stopped=len(open_ids), finishing=0)


def is_archived(s: Session, slug: str) -> bool:
    """Unknown slugs are not archived: the caller's own lookup reports them as not found."""
    return s.scalar(select(Sequence.archived_at).where(Sequence.slug == slug)) is not None


def form_closed(slug: str) -> bool:
    with reading() as s:
        return is_archived(s, slug)


def require_open(seq: Sequence) -> None:
    """For commands that add people: an archived sequence takes no one new."""
    if seq.archived_at is not None:
        raise NurtureError(f"{seq.slug} is archived: it takes no new subscribers")
