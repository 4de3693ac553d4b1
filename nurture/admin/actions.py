"""What an operator may do from the dashboard, each through the service the command line uses
and each written to the audit log in the same transaction (nothing half-done: an action that
fails leaves no entry and no change).

Readers are named by their public id, never by address: the address stays off URLs and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.admin.services import audit
from nurture.booking.booked import mark_booked
from nurture.db import reading, transaction
from nurture.delivery.models import Delivery
from nurture.delivery.retry import retry_delivery
from nurture.errors import NotFound, NurtureError
from nurture.sequences.archive import archive
from nurture.sequences.models import SequenceStatus
from nurture.sequences.services import get_sequence, resume, set_status
from nurture.subscribers import holding
from nurture.subscribers.confirmation import ask_again
from nurture.subscribers.models import (
    Subscriber,
)
from nurture.subscribers.moving import remove
from nurture.subscribers.privacy import forget, leave_nothing
from nurture.subscribers.unsubscribe import unsubscribe


class ReaderAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    UNSUBSCRIBE = "unsubscribe"
    BOOKED = "booked"
    RESEND = "resend-confirmation"
    TAKE_OUT = "take-out"
    FORGET = "forget"


# What the confirmation page asks, and the audit log's words for each action.
QUESTIONS: dict[ReaderAction, str] = {
    ReaderAction.PAUSE: "Pause this reader's sequences? Nothing more is sent until resumed.",
    ReaderAction.RESUME: "Resume this reader's paused sequences in their next send window?",
    ReaderAction.UNSUBSCRIBE: "Unsubscribe this reader? Every sequence stops for good.",
    ReaderAction.BOOKED: "Mark this reader as booked? Their sequences stop.",
    ReaderAction.RESEND: "Send the confirmation email to this reader again?",
    ReaderAction.TAKE_OUT: "Take this reader out of this sequence? Others go on.",
    ReaderAction.FORGET: "Erase everything held on this reader? This cannot be undone.",
}
NEEDS_SEQUENCE = {ReaderAction.TAKE_OUT}


def reader(s: Session, public_id: str) -> Subscriber:
    sub = s.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
    if sub is None:
        raise NotFound("no such reader (they may have been forgotten)")
    return sub


@dataclass(frozen=True)
class Done:
    message: str
    gone: bool = False  # the reader no longer exists (forgotten)


def act_on_reader(
    operator: str, public_id: str, action: ReaderAction, slug: str | None = None
) -> Done:
    """Do `action` for this reader as `operator`, audited. Raises NotFound or NurtureError."""
    if action in NEEDS_SEQUENCE and not slug:
        raise NurtureError("choose the sequence to take them out of")
    by = f"dashboard:{operator}"
    if action == ReaderAction.RESEND:
        return _ask_again(operator, public_id, slug)
    address: str | None = None
    with transaction() as s:
        sub = reader(s, public_id)
        target = slug
        if action == ReaderAction.PAUSE:
            n = holding.pause(s, sub, slug, by=by)
            message = f"paused {n} sequence(s)" if n else "nothing to pause: no running sequence"
        elif action == ReaderAction.RESUME:
            n = holding.resume(s, sub, slug, by=by)
            message = f"resumed {n} sequence(s)" if n else "nothing to resume: nothing paused"
        elif action == ReaderAction.UNSUBSCRIBE:
            changed = unsubscribe(s, sub, how="dashboard")
            message = "unsubscribed" if changed else "already unsubscribed"
        elif action == ReaderAction.BOOKED:
            changed = mark_booked(s, sub, source="dashboard")
            message = "marked booked" if changed else "already booked"
        elif action == ReaderAction.TAKE_OUT:
            ended = remove(s, sub, get_sequence(s, slug or ""), by=by)
            message = f"already out of {slug} ({ended})" if ended else f"taken out of {slug}"
        else:
            address = sub.email
            forget(s, address)
            message = "forgotten: personal data erased, address suppressed"
        audit(s, operator, f"reader {action.value}", subscriber_id=sub.id, target=target)
    if address is not None:
        leave_nothing([address])
        return Done(message, gone=True)
    return Done(message)


def _ask_again(operator: str, public_id: str, slug: str | None) -> Done:
    """`subscribers resend-confirmation`'s service (the same daily limit); audited once it
    has run. Raises NurtureError saying why when nothing waits for their yes."""
    with reading() as s:
        sub = reader(s, public_id)
        address, sub_id = sub.email, sub.id
    asked = ask_again(address, slug)
    with transaction() as s:
        detail = {"sent": asked.sent}
        audit(
            s,
            operator,
            "reader resend-confirmation",
            subscriber_id=sub_id,
            target=asked.slug,
            detail=detail,
        )
    if asked.sent:
        return Done(f"confirmation email for {asked.slug} sent again")
    if asked.limit_until is not None:
        return Done(f"not sent: the day's limit is reached until {asked.limit_until:%H:%M} UTC")
    return Done("not sent: the confirmation is no longer wanted")


class SequenceAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    ARCHIVE = "archive"


def act_on_sequence(operator: str, slug: str, action: SequenceAction) -> str:
    with transaction() as s:
        if action == SequenceAction.PAUSE:
            set_status(s, slug, SequenceStatus.PAUSED)
            message = f"{slug} paused: nothing is sent until it is resumed"
        elif action == SequenceAction.RESUME:
            n = resume(s, slug)
            message = f"{slug} resumed ({n} overdue sends spread into their windows)"
        else:
            archive(s, slug, stop=False)
            message = f"{slug} archived: its form is closed, readers in it finish"
        audit(s, operator, f"sequence {action.value}", target=slug)
    return message


def retry(operator: str, delivery_id: int) -> str:
    with transaction() as s:
        retry_delivery(s, delivery_id)
        d = s.get(Delivery, delivery_id)
        sub_id = d.enrollment.subscriber_id if d is not None else None
        audit(s, operator, "delivery retry", subscriber_id=sub_id, target=f"delivery {delivery_id}")
    return f"delivery {delivery_id} queued again: the next dispatch pass sends it"
