"""Reports for the operator: what will be sent, how each step does, and failed deliveries.

Read only: counts, and the delivery list the operator needs to act on one send. Acting on
it (retrying a failed send) is nurture/delivery/retry.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Result, func, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.delivery.limits import next_utc_day, sent_today
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.events.models import Event
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import SendWindow, pushed_by_quiet_day, reader_zone, window_of
from nurture.sequences.services import get_sequence
from nurture.subscribers.attribution import ATTRIBUTED, last_sent_step
from nurture.subscribers.models import (
    Enrollment,
    Subscriber,
)
from nurture.subscribers.rules import mailable

# --- schedule -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRow:
    when: str  # "overdue", an hour "2026-03-06 14:00Z", a day "2026-03-06", or "held"
    sequence: str
    step: str
    count: int
    quiet_moved: int = 0  # of these, sends that a quiet day moved to this later time


def _quiet_rules(s: Session) -> dict[int, tuple[SendWindow, str]]:
    """Sequences with quiet days: their whole rule and default zone."""
    rules = {}
    for seq in s.scalars(select(Sequence)):
        if seq.config.quiet_days:
            rules[seq.id] = (window_of(seq), seq.config.timezone)
    return rules


def _moved_by_quiet_day(
    rule: tuple[SendWindow, str],
    tz_name: str | None,
    after: datetime | None,
    delay: int,
    due: datetime,
) -> bool:
    """Would this send have gone earlier, on a day that is quiet, without the quiet days?"""
    if after is None:
        return False
    window, default_tz = rule
    tz = reader_zone(tz_name, default_tz)
    return pushed_by_quiet_day(window, tz, after, timedelta(seconds=delay), due)


def schedule(s: Session, within: timedelta) -> list[ScheduleRow]:
    """Sends due within `within` from now, per sequence and step, bucketed per hour (up to
    two days ahead) or per day. Paused sequences are counted as held. Sends that a quiet
    day pushed later are counted again in `quiet_moved`. Under NURTURE_SEND_DAILY_LIMIT,
    what today's remaining quota cannot take waits for the next UTC day, and is shown
    there."""
    at = now()
    hourly = within <= timedelta(days=2)
    buckets: Counter[tuple[str, str, str, str]] = Counter()
    moved: Counter[tuple[str, str, str, str]] = Counter()
    rules = _quiet_rules(s)
    rows = _due_sends(s, at + within)
    quota = _DailyQuota(s, at)
    for slug, status, position, key, due, seq_id, delay, after, tz_name in rows:
        if due is None:
            continue
        bucket = (_when(status, due, at, hourly, quota), slug, f"{position:03d}", key)
        buckets[bucket] += 1
        if seq_id in rules and _moved_by_quiet_day(rules[seq_id], tz_name, after, delay, due):
            moved[bucket] += 1
    return [
        ScheduleRow(when, slug, key, n, moved[(when, slug, pos, key)])
        for (when, slug, pos, key), n in sorted(buckets.items(), key=lambda kv: _order(kv[0]))
    ]


def _due_sends(
    s: Session, until: datetime
) -> Result[str, str, int, str, datetime | None, int, int, datetime | None, str | None]:
    """Each mailable enrollment due by `until`: its sequence and step, and what its due
    time was computed from (for the quiet-day count)."""
    return s.execute(
        select(
            Sequence.slug,
            Sequence.status,
            Step.position,
            Step.key,
            Enrollment.next_due_at,
            Enrollment.sequence_id,
            Step.delay_seconds,
            func.coalesce(Enrollment.last_sent_at, Enrollment.started_at),
            Subscriber.timezone,
        )
        .join(Sequence, Sequence.id == Enrollment.sequence_id)
        .join(Step, Step.id == Enrollment.next_step_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            mailable(),
            Enrollment.next_due_at <= until,
        )
        .order_by(Enrollment.next_due_at)
        .execution_options(yield_per=5000)
    )


def _when(status: str, due: datetime, at: datetime, hourly: bool, quota: _DailyQuota) -> str:
    """The bucket a send is counted in. Paused sends take no quota: they are not sent."""
    if status == SequenceStatus.PAUSED:
        return "held (paused)"
    if (waits := quota.waits_until(due)) is not None:
        return f"{waits:%Y-%m-%d %H:00Z} (daily limit)"
    if due <= at:
        return "now (overdue)"
    return due.strftime("%Y-%m-%d %H:00Z" if hourly else "%Y-%m-%d")


class _DailyQuota:
    """Today's remaining NURTURE_SEND_DAILY_LIMIT, handed out in due order: a send beyond
    it waits for the next UTC day (as the workers make it), and one the workers already put
    back to midnight for the limit is shown as waiting too."""

    def __init__(self, s: Session, at: datetime) -> None:
        self.limit = current().settings.send_daily_limit
        self.tomorrow = next_utc_day(at)
        self.left = max(0, self.limit - sent_today(s, at)) if self.limit else 0

    def waits_until(self, due: datetime) -> datetime | None:
        if not self.limit:
            return None
        if due < self.tomorrow:
            if self.left > 0:
                self.left -= 1
                return None
            return self.tomorrow
        if due == self.tomorrow:
            return self.tomorrow
        return None


def _order(k: tuple[str, str, str, str]) -> tuple[int, str, str, str]:
    when, slug, pos, _ = k
    rank = 0 if when.startswith("now") else 2 if when.startswith("held") else 1
    return (rank, when, slug, pos)


# --- stats ----------------------------------------------------------------------------


@dataclass
class StepStats:
    key: str
    position: int | None  # None: a removed step that still has history
    sent: int = 0
    failed: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    booked: int = 0
    # What came back (nurture/feedback/handling.py): per step whose email it was about.
    bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0
    replied: int = 0


@dataclass
class SequenceStats:
    slug: str
    name: str
    status: str
    steps: list[StepStats] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stats(s: Session, slug: str | None = None) -> list[SequenceStats]:
    """Per-step funnel. An unsubscribe or booking counts for the last step sent before it;
    a bounce, complaint or reply for the email it was about."""
    seqs = [get_sequence(s, slug)] if slug else list(s.scalars(select(Sequence).order_by("slug")))
    if not seqs:
        return []
    ids = [q.id for q in seqs]
    steps = list(s.scalars(select(Step).where(Step.sequence_id.in_(ids)).order_by(Step.position)))
    per_step = {
        st.id: StepStats(st.key, st.position if st.removed_at is None else None) for st in steps
    }
    _count_sends(s, per_step)
    _count_erased_sends(s, per_step)
    _count_clicks(s, per_step)
    _count_attributed(s, per_step)
    return [_sequence_stats(seq, steps, per_step) for seq in seqs]


def _count_sends(s: Session, per_step: dict[int, StepStats]) -> None:
    for step_id, status, n in s.execute(
        select(Delivery.step_id, Delivery.status, func.count())
        .where(Delivery.step_id.in_(list(per_step)))
        .group_by(Delivery.step_id, Delivery.status)
    ):
        if status == DeliveryStatus.SENT:
            per_step[step_id].sent += n
        elif status == DeliveryStatus.FAILED:
            per_step[step_id].failed += n


def _count_erased_sends(s: Session, per_step: dict[int, StepStats]) -> None:
    # People erased (forget, the retention limit) leave anonymous counts of their sends.
    for erased_step, kind, n in s.execute(
        select(Event.step_id, Event.kind, func.count())
        .where(Event.kind.in_(["sent_erased", "failed_erased"]), Event.step_id.in_(list(per_step)))
        .group_by(Event.step_id, Event.kind)
    ):
        if erased_step is None:
            continue
        if kind == "sent_erased":
            per_step[erased_step].sent += n
        else:
            per_step[erased_step].failed += n


def _count_clicks(s: Session, per_step: dict[int, StepStats]) -> None:
    # One per email clicked (several clicks on one email count once).
    for clicked_step, with_delivery, without in s.execute(
        select(
            Event.step_id,
            func.count(func.distinct(Event.delivery_id)),
            func.count().filter(Event.delivery_id.is_(None)),
        )
        .where(Event.kind == "clicked", Event.step_id.in_(list(per_step)))
        .group_by(Event.step_id)
    ):
        if clicked_step is not None:
            per_step[clicked_step].clicked = with_delivery + without


def _count_attributed(s: Session, per_step: dict[int, StepStats]) -> None:
    """The ATTRIBUTED events, per the step they name, else the last one sent before them."""
    attributed = (
        select(
            Event.kind.label("kind"),
            func.coalesce(
                Event.step_id,
                last_sent_step(Event.subscriber_id, Event.created_at)
                .correlate(Event)
                .scalar_subquery(),
            ).label("step_id"),
        )
        .where(Event.kind.in_(ATTRIBUTED))
        .subquery()
    )
    for kind, step_id, n in s.execute(
        select(attributed.c.kind, attributed.c.step_id, func.count())
        .where(attributed.c.step_id.in_(list(per_step)))
        .group_by(attributed.c.kind, attributed.c.step_id)
    ):
        setattr(per_step[step_id], kind, n)


def _sequence_stats(
    seq: Sequence, steps: list[Step], per_step: dict[int, StepStats]
) -> SequenceStats:
    live = [per_step[st.id] for st in steps if st.sequence_id == seq.id]
    # Removed steps appear only when they have history worth showing.
    live = [x for x in live if x.position is not None or x.sent or x.failed]
    live.sort(key=lambda x: (x.position is None, x.position or 0))
    return SequenceStats(seq.slug, seq.name, seq.status, live)


# --- deliveries -----------------------------------------------------------------------


def list_deliveries(s: Session, status: str | None, limit: int) -> list[dict[str, Any]]:
    q = (
        select(Delivery, Sequence.slug, Step.key, Subscriber)
        .join(Step, Step.id == Delivery.step_id)
        .join(Sequence, Sequence.id == Step.sequence_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if status:
        q = q.where(Delivery.status == status)
    return [
        {
            "id": d.id,
            "sequence": slug,
            "step": key,
            "email": sub.email,
            "status": d.status,
            "attempts": d.attempts,
            "due_at": d.due_at.isoformat(),
            "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            "next_try": _next_try(d),
            "error": d.error,
        }
        for d, slug, key, sub in s.execute(q)
    ]


def _next_try(d: Delivery) -> str | None:
    """When a deferred delivery (queued, tried and refused for now) is tried again: the next
    dispatch pass after its backed-off lease runs out."""
    if d.status == DeliveryStatus.QUEUED and d.attempts and d.lease_until is not None:
        return d.lease_until.isoformat()
    return None


@dataclass(frozen=True)
class Deferred:
    count: int
    next_try: datetime | None
    reason: str | None  # the commonest error (an SMTP reply or an exception's name)


def deferred_among(s: Session, ids: list[int]) -> Deferred:
    """Of these deliveries, the ones a send attempt left queued for a later try."""
    rows: list[tuple[datetime | None, str | None]] = []
    for i in range(0, len(ids), 1000):
        rows += [
            (r.lease_until, r.error)
            for r in s.execute(
                select(Delivery.lease_until, Delivery.error).where(
                    Delivery.id.in_(ids[i : i + 1000]),
                    Delivery.status == DeliveryStatus.QUEUED,
                    Delivery.attempts > 0,
                )
            )
        ]
    if not rows:
        return Deferred(0, None, None)
    reasons = Counter(error for _, error in rows if error)
    return Deferred(
        count=len(rows),
        next_try=min((at for at, _ in rows if at is not None), default=None),
        reason=reasons.most_common(1)[0][0] if reasons else None,
    )
