"""What we hold on people: exporting it, and erasing one person for good.

`forget` removes the subscriber row and everything hanging off it (consents, enrollments,
deliveries, stored links); events stay for the statistics but lose every link to the
person and any free text that could hold an address. What remains is the blind index of
the address in `suppressions` (subscribers/suppression.py), so it is never mailed or
re-added by mistake.

Then nothing may be left elsewhere (`leave_nothing`, after the commit): the file outbox's
copies of their emails are deleted (or named, when they cannot be), SQLite's write-ahead
log is checkpointed and emptied (deleted rows are zeroed in the file: secure_delete), and
the embedded broker's delivered messages are deleted.

The statistics keep their counts: each sent or failed delivery leaves an anonymous event
(`sent_erased`, `failed_erased`: step and sequence, nobody's id) that `stats` adds back.
The retention limits (retention.py) erase people through the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nurture.celery_app import delete_delivered_messages
from nurture.context import current
from nurture.db import checkpoint, get_engine, transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.events.models import Event, EventKind
from nurture.events.recording import record_event
from nurture.mail.backends import get_backend
from nurture.sequences.models import Sequence, Step
from nurture.subscribers.addresses import find_subscriber, normalize_email
from nurture.subscribers.attribution import ATTRIBUTED, attribute_step
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.queries import person
from nurture.subscribers.suppression import suppress

EXPORT_FIELDS = (
    "email",
    "first_name",
    "timezone",
    "status",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "booked_at",
    "bounced_at",
    "complained_at",
    "sequences",
)


# A cell starting with one of these is run as a formula by spreadsheet programs (OWASP, "CSV
# Injection"): a name typed into the form as =HYPERLINK(...) must reach the operator as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every formula-like text cell prefixed by a quote, as OWASP advises."""
    return {
        key: f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
        for key, value in row.items()
    }


def export_rows(s: Session, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Every subscriber, streamed in id order, a chunk at a time."""
    last_id = 0
    while True:
        subs = list(
            s.scalars(
                select(Subscriber)
                .where(Subscriber.id > last_id)
                .order_by(Subscriber.id)
                .limit(chunk)
            )
        )
        if not subs:
            return
        enrolled: dict[int, list[str]] = {}
        for sub_id, slug, status in s.execute(
            select(Enrollment.subscriber_id, Sequence.slug, Enrollment.status)
            .join(Sequence, Sequence.id == Enrollment.sequence_id)
            .where(Enrollment.subscriber_id.in_([x.id for x in subs]))
            .order_by(Sequence.slug)
        ):
            enrolled.setdefault(sub_id, []).append(f"{slug}:{status}")
        for sub in subs:
            yield {**person(sub), "sequences": " ".join(enrolled.get(sub.id, []))}
        last_id = subs[-1].id
        s.expunge_all()


@dataclass(frozen=True)
class Copies:
    """What `leave_nothing` found outside the tables."""

    removed: int = 0  # files of the file outbox (and the like) deleted
    left: list[str] = field(default_factory=list)  # what could not be deleted, and where


@dataclass(frozen=True)
class ForgetResult:
    found: bool
    events_kept: int  # anonymous events left for the statistics
    copies: Copies = field(default_factory=Copies)


ERASED_KINDS: dict[str, str] = {
    DeliveryStatus.SENT: EventKind.SENT_ERASED,
    DeliveryStatus.FAILED: EventKind.FAILED_ERASED,
}


def forget(s: Session, email: str, reason: str = "forgotten") -> ForgetResult:
    """Erase the person and suppress the address. Safe to repeat; also suppresses an address
    we never held, since "never write to me" should hold either way."""
    address = normalize_email(email)
    suppress(s, address, reason)
    sub = find_subscriber(s, address)
    if sub is None:
        return ForgetResult(found=False, events_kept=0)
    # Recorded while the person still exists, so the event webhook (if on) can tell the
    # practice's own systems whom to erase; the link to them goes below with the others.
    record_event(s, EventKind.FORGOTTEN, sub)
    return ForgetResult(found=True, events_kept=erase(s, sub))


def erase(s: Session, sub: Subscriber) -> int:
    """Delete the person's rows, keeping their events for the statistics without any link
    to them or free text. Returns how many events were kept."""
    events = list(s.scalars(select(Event).where(Event.subscriber_id == sub.id)))
    _keep_delivery_counts(s, sub.id)
    _keep_signup_counts(s, sub.id)
    for ev in events:
        # Stats attribute an unsubscribe, booking, bounce, complaint or reply to the last
        # step sent before it; fix that now, while the deliveries that tell it still exist.
        if ev.kind in ATTRIBUTED and ev.step_id is None:
            found = attribute_step(s, sub.id, ev.created_at)
            if found is not None:
                ev.sequence_id, ev.step_id = found
        ev.data = {}  # a bounce reason can quote the address; no free text survives
    s.flush()
    s.execute(
        update(Event)
        .where(Event.subscriber_id == sub.id)
        .values(subscriber_id=None, delivery_id=None)
        .execution_options(synchronize_session=False)
    )
    s.delete(sub)  # enrollments and consents by cascade; deliveries and links by foreign key
    s.flush()
    return len([ev for ev in events if ev.kind != EventKind.FORGOTTEN])


def forget_person(email: str) -> ForgetResult:
    """`subscribers forget`: erase one person, then whatever copies are left elsewhere."""
    with transaction() as s:
        result = forget(s, email)
    return replace(result, copies=leave_nothing([normalize_email(email)]))


def leave_nothing(addresses: Iterable[str]) -> Copies:
    """After erasing (committed): the copies outside the tables go too. See the module."""
    backend = get_backend()
    removed, left = 0, []
    for address in addresses:
        try:
            removed += len(backend.forget(address))
        except OSError as exc:
            left.append(f"{exc.filename}: {exc.strerror}")
    checkpoint(get_engine())
    delete_delivered_messages(current().settings.broker_url)
    return Copies(removed, left)


def _keep_signup_counts(s: Session, subscriber_id: int) -> None:
    """One anonymous event per sequence the person was in: the funnel's "signed up" and
    "confirmed" outlive them (nurture/reports.py)."""
    for sequence_id, status in s.execute(
        select(Enrollment.sequence_id, Enrollment.status).where(
            Enrollment.subscriber_id == subscriber_id
        )
    ):
        waited = status == EnrollmentStatus.PENDING
        kind = EventKind.UNCONFIRMED_ERASED if waited else EventKind.CONFIRMED_ERASED
        s.add(Event(kind=kind, sequence_id=sequence_id))


def _keep_delivery_counts(s: Session, subscriber_id: int) -> None:
    """One anonymous event per sent or failed delivery, for `stats` once the rows are gone."""
    rows = s.execute(
        select(Step.sequence_id, Delivery.step_id, Delivery.status, func.count())
        .join(Step, Step.id == Delivery.step_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(Enrollment.subscriber_id == subscriber_id, Delivery.status.in_(ERASED_KINDS))
        .group_by(Step.sequence_id, Delivery.step_id, Delivery.status)
    )
    for sequence_id, step_id, status, n in rows:
        for _ in range(n):
            s.add(Event(kind=ERASED_KINDS[status], sequence_id=sequence_id, step_id=step_id))
