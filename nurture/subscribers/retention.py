"""The retention limit (NURTURE_RETENTION_DAYS): how long we keep a person once we are done.

Readers' addresses here are health-adjacent data: that someone signed up for "when your
partner won't go to therapy" says something about their life. Once every sequence a person
was in has ended (completed, unsubscribed, bounced, complained, booked, or stopped by the
operator) and the limit has passed since the last of them ended, nothing we could still do
for them needs their address. They are erased exactly as `subscribers forget` erases
(privacy.forget): only the keyed hash of the address stays, so they are never mailed again
unless they come back through the form themselves, and `stats` keeps its counts.

People still in a sequence (pending confirmation, active, paused) are never purged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import transaction
from nurture.errors import NurtureError
from nurture.subscribers.models import ENDED, Enrollment, Subscriber
from nurture.subscribers.privacy import forget

log = logging.getLogger(__name__)

CHUNK = 200  # people erased per transaction: short locks, steady progress


@dataclass(frozen=True)
class PurgeResult:
    retention_days: int
    cutoff: datetime
    due: int  # people past the limit (the dry run stops here)
    erased: int


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


def purge(*, dry_run: bool = False, days: int | None = None) -> PurgeResult:
    """Apply the retention limit now. Counts only: never returns or logs an address."""
    days = days or current().settings.retention_days
    if days is None:
        raise NurtureError("NURTURE_RETENTION_DAYS is not set: nothing is ever purged")
    cutoff = now() - timedelta(days=days)
    with transaction() as s:
        due = len(due_for_purge(s, cutoff))
    erased = 0
    while not dry_run:
        with transaction() as s:
            ids = due_for_purge(s, cutoff, CHUNK)
            for sub in s.scalars(select(Subscriber).where(Subscriber.id.in_(ids))):
                forget(s, sub.email, reason="retention")
        erased += len(ids)
        if len(ids) < CHUNK:
            break
    if erased:
        log.info("retention: %d people erased (ended %d+ days ago)", erased, days)
    return PurgeResult(days, cutoff, due, erased)
