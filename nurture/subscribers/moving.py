"""An operator changing one person's sequences: taking them out of one (`subscribers
remove`) or moving them to another (`subscribers move`). Nothing else about them changes:
they stay subscribed, their other sequences go on, and leaving one sequence is not an
unsubscribe (that is unsubscribe.py, and it ends everything).

Removing ends the enrollment as `cancelled` and cancels its queued mail in the same
transaction (leaving.end_enrollment); a worker holding a claimed email re-reads the
enrollment under lock before sending, so nothing of that sequence goes out after the commit.
Adding them again later (`subscribers add`) gives them the steps they have not had.

Moving is removing from one and enrolling in the other, with a consent of its own: the
person agreed to the first series, and the operator who moves them (at their request)
holds their yes to the second, as for `subscribers add --confirmed`. Someone who had not
confirmed the first is moved as they were: pending, asked nothing until the operator sends
them a confirmation (`subscribers resend-confirmation`). The first email of the new sequence
keeps to their window: nobody is waiting for it at this moment (enrolling.first_send).
People who left (unsubscribed, bounced, complained) or booked a consult are never moved
anywhere: their sequences stopped for good reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.errors import NotFound, NurtureError
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.archive import require_open
from nurture.sequences.models import Sequence
from nurture.subscribers.enrolling import enrol
from nurture.subscribers.leaving import end_enrollment
from nurture.subscribers.models import (
    ENDED,
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.operator import skipped_message
from nurture.subscribers.suppression import refusal

MOVE_CONSENT = (
    "Moved from “{from_name}” to “{to_name}” by the operator, who holds this person's consent."
)
MOVE_CONSENT_VERSION = "move-1"
OPERATOR_SOURCE = "cli"


def enrollment_in(s: Session, sub: Subscriber, seq: Sequence) -> Enrollment:
    """Their place in `seq`; NotFound when they have none."""
    enrollment = s.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id
        )
    )
    if enrollment is None:
        raise NotFound(f"that address is not in sequence {seq.slug!r}")
    return enrollment


def remove(s: Session, sub: Subscriber, seq: Sequence, *, by: str = "cli") -> str | None:
    """Take them out of `seq`. Returns None when done, or how their place there had already
    ended (completed, booked...): nothing to remove."""
    enrollment = enrollment_in(s, sub, seq)
    if enrollment.status in ENDED:
        return str(enrollment.status)
    end_enrollment(s, enrollment, EnrollmentStatus.CANCELLED)
    record_event(s, EventKind.REMOVED, sub, sequence_id=seq.id, data={"by": by})
    return None


@dataclass(frozen=True)
class Moved:
    started: bool  # the new sequence runs; False: pending, waiting for their yes
    first_due: datetime | None  # when its first email goes (started only)


def move(s: Session, sub: Subscriber, source: Sequence, to: Sequence, *, by: str = "cli") -> Moved:
    """Out of `source`, into `to`. Raises NurtureError (NotFound) saying why not."""
    if source.id == to.id:
        raise NurtureError("--from and --to name the same sequence")
    require_open(to)
    reason = refusal(s, sub.email, sub)
    if reason is not None:
        raise NurtureError(skipped_message(reason))
    if sub.booked_at is not None:
        raise NurtureError("skipped: this person booked a consult, which stopped their sequences")
    leaving = enrollment_in(s, sub, source)
    if leaving.status in ENDED:
        raise NurtureError(
            f"their place in {source.slug!r} already ended ({leaving.status}): nothing to move; "
            f"`subscribers add` enrols them in {to.slug!r}"
        )
    there = s.scalar(
        select(Enrollment).where(
            Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == to.id
        )
    )
    if there is not None and there.status != EnrollmentStatus.CANCELLED:
        raise NurtureError(f"already in {to.slug!r} ({there.status}): nothing moved")
    # Their yes to the first sequence carries over only if they gave it.
    said_yes = (
        sub.status == SubscriberStatus.CONFIRMED and leaving.status != EnrollmentStatus.PENDING
    )
    end_enrollment(s, leaving, EnrollmentStatus.CANCELLED)
    s.add(
        Consent(
            subscriber_id=sub.id,
            sequence_id=to.id,
            source=OPERATOR_SOURCE,
            consent_text=MOVE_CONSENT.format(from_name=source.name, to_name=to.name),
            consent_version=MOVE_CONSENT_VERSION,
            confirmed_at=now() if said_yes else None,
        )
    )
    entered = enrol(s, sub, to, start_now=said_yes, source=OPERATOR_SOURCE, waiting=False)
    record_event(s, EventKind.MOVED, sub, sequence_id=source.id, data={"to": to.slug, "by": by})
    started = entered.status == EnrollmentStatus.ACTIVE
    return Moved(started=started, first_due=entered.next_due_at if started else None)
