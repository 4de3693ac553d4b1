"""How long we keep a person: the retention limit, and the limit for signups never confirmed.

Readers' addresses here are health-adjacent data: that someone signed up for "when your
partner won't go to therapy" says something about their life.

- NURTURE_RETENTION_DAYS: once every sequence a person was in has ended (completed,
  unsubscribed, bounced, complained, booked, or stopped by the operator) and the limit has
  passed since the last of them ended, nothing we could still do for them needs their
  address. They are erased exactly as `subscribers forget` erases (privacy.forget): only the
  blind index of the address stays, so they are never mailed again unless they come back
  through the form themselves, and `stats` keeps its counts. Unset: kept.
- NURTURE_PENDING_DAYS (30 by default): a signup nobody confirmed is an address someone
  typed, perhaps not its owner, whose confirmation link died after 7 days. The person (when
  they never confirmed anything) or that one pending signup (when they are confirmed for
  another sequence) is erased; people an operator imported without --confirmed were never
  asked and are left to the operator. Nothing is suppressed: its owner never asked for anything,
  and may sign up themselves one day.

People in a running sequence (active, paused) are never purged. Beat runs this daily;
`nurture subscribers purge` runs it now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery
from nurture.subscribers.models import (
    ENDED,
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from nurture.subscribers.privacy import erase, forget, leave_nothing

log = logging.getLogger(__name__)

CHUNK = 200  # people erased per transaction: short locks, steady progress
IMPORT_SOURCE = "import"


@dataclass(frozen=True)
class PurgeResult:
    retention_days: int | None  # None: the retention limit is off
    cutoff: datetime | None
    due: int  # people past the retention limit (the dry run stops here)
    erased: int
    pending_days: int
    pending_cutoff: datetime
    pending_due: int  # signups never confirmed, past their limit
    pending_erased: int


def _ended_at() -> ColumnElement[datetime]:
    # An ended enrollment without its end time (older rows) counts from when it started.
    return func.coalesce(Enrollment.ended_at, Enrollment.started_at, Enrollment.created_at)


def due_for_purge(s: Session, cutoff: datetime, limit: int | None = None) -> list[int]:
    """Ids of people with at least one enrollment, all ended at or before `cutoff`."""
    still_held = exists().where(
        Enrollment.subscriber_id == Subscriber.id,
        or_(Enrollment.status.not_in(list(ENDED)), _ended_at() > cutoff),
    )
    had_one = exists().where(Enrollment.subscriber_id == Subscriber.id)
    q = select(Subscriber.id).where(had_one, ~still_held).order_by(Subscriber.id)
    return list(s.scalars(q.limit(limit) if limit else q))


def never_confirmed(s: Session, cutoff: datetime, limit: int | None = None) -> list[int]:
    """Ids of people who never confirmed anything and signed up last at or before `cutoff`.
    An operator's import is not a signup: its pending people were never asked, and stay
    until the operator confirms or forgets them."""
    recent = exists().where(
        Consent.subscriber_id == Subscriber.id,
        or_(Consent.created_at > cutoff, Consent.source == IMPORT_SOURCE),
    )
    q = (
        select(Subscriber.id)
        .where(
            Subscriber.status == SubscriberStatus.PENDING,
            Subscriber.confirmed_at.is_(None),
            Subscriber.created_at <= cutoff,
            ~recent,
        )
        .order_by(Subscriber.id)
    )
    return list(s.scalars(q.limit(limit) if limit else q))


def _drop_stale_signups(s: Session, cutoff: datetime) -> None:
    """A confirmed person's signup for another sequence that they never confirmed: the
    pending enrollment (never sent anything) and its unconfirmed consents go."""
    stale = list(
        s.scalars(
            select(Enrollment.id).where(
                Enrollment.status == EnrollmentStatus.PENDING,
                Enrollment.created_at <= cutoff,
                ~exists().where(Delivery.enrollment_id == Enrollment.id),
                ~exists().where(
                    Consent.subscriber_id == Enrollment.subscriber_id,
                    Consent.sequence_id == Enrollment.sequence_id,
                    or_(Consent.confirmed_at.is_not(None), Consent.created_at > cutoff),
                ),
            )
        )
    )
    for enrollment in s.scalars(select(Enrollment).where(Enrollment.id.in_(stale))):
        s.execute(
            delete(Consent).where(
                Consent.subscriber_id == enrollment.subscriber_id,
                Consent.sequence_id == enrollment.sequence_id,
                Consent.confirmed_at.is_(None),
            )
        )
        s.delete(enrollment)


def _erase_in_chunks(pick: str, cutoff: datetime, addresses: list[str]) -> int:
    """Erase everyone `pick` finds, CHUNK people per transaction."""
    erased = 0
    while True:
        with transaction() as s:
            ids = (due_for_purge if pick == "retention" else never_confirmed)(s, cutoff, CHUNK)
            for sub in s.scalars(select(Subscriber).where(Subscriber.id.in_(ids))):
                addresses.append(sub.email)
                if pick == "retention":
                    forget(s, sub.email, reason="retention")
                else:
                    erase(s, sub)
        erased += len(ids)
        if len(ids) < CHUNK:
            return erased


def purge(*, dry_run: bool = False, days: int | None = None) -> PurgeResult:
    """Apply both limits now. Counts only: never returns or logs an address."""
    settings = current().settings
    days = days or settings.retention_days
    at = now()
    cutoff = at - timedelta(days=days) if days else None
    pending_cutoff = at - timedelta(days=settings.pending_days)
    with transaction() as s:
        due = len(due_for_purge(s, cutoff)) if cutoff else 0
        pending_due = len(never_confirmed(s, pending_cutoff))
    erased = pending_erased = 0
    if not dry_run:
        addresses: list[str] = []
        pending_erased = _erase_in_chunks("pending", pending_cutoff, addresses)
        with transaction() as s:
            _drop_stale_signups(s, pending_cutoff)
        if cutoff:
            erased = _erase_in_chunks("retention", cutoff, addresses)
        leave_nothing(addresses)
    if erased or pending_erased:
        log.info("retention: %d people erased, %d unconfirmed signups", erased, pending_erased)
    return PurgeResult(
        days,
        cutoff,
        due,
        erased,
        settings.pending_days,
        pending_cutoff,
        pending_due,
        pending_erased,
    )
