"""What each dashboard page shows, read in one transaction per page. Counts come from
nurture/reports.py, the code behind `nurture stats` and `nurture schedule`, so the page and
the command can never disagree; what the reports do not give (one reader's next step and
timeline, the readers list) is read here. Times are shown in the practice's zone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture import reports, tokens
from nurture.admin.actions import reader as reader_row
from nurture.clock import practice_zone
from nurture.delivery.compose import compose
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.errors import NotFound
from nurture.events.models import Event, EventKind
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import DAYS, pushed_by_quiet_day, reader_zone, window_of
from nurture.sequences.services import get_sequence, live_steps
from nurture.subscribers.addresses import email_index, normalize_email
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)

READER_STATUSES = [s.value for s in SubscriberStatus]
PAGE = 50
DAYS_SHOWN = 90


def zone_name() -> str:
    zone = practice_zone()
    return str(getattr(zone, "key", None) or zone)


def local(at: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return at.astimezone(practice_zone()).strftime(fmt) if at is not None else ""


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- overview -------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """The same funnel, daily activity and deliverability as `nurture stats` reads."""

    funnels: list[reports.SequenceFunnel]
    days: tuple[reports.DayActivity, ...]
    deliverability: reports.Deliverability
    line: float = reports.COMPLAINT_LINE


def overview(s: Session) -> Overview:
    return Overview(
        reports.stats(s), reports.activity(s, days=DAYS_SHOWN), reports.deliverability(s)
    )


# --- this week ------------------------------------------------------------------------


@dataclass
class WeekSequence:
    slug: str
    name: str
    window: str
    per_when: dict[str, int] = field(default_factory=dict)  # day (or "overdue") -> sends
    steps: dict[str, Counter[str]] = field(default_factory=dict)  # day -> step -> sends
    held: list[tuple[str, int]] = field(default_factory=list)  # (why, how many)


@dataclass(frozen=True)
class Week:
    days: list[str]
    sequences: list[WeekSequence]


_WHY = {
    reports.Held.WINDOW: "waits for the reader's send window",
    reports.Held.QUIET_DAY: "moved past a quiet day",
    reports.Held.DAILY_LIMIT: "today's daily limit is spent: waits for the next day",
    reports.Held.PAUSED: "paused (the sequence, or the reader: a reply, a break or an operator)",
}


def this_week(s: Session) -> Week:
    """What `nurture schedule --within 7d` says, per sequence and day of the practice's zone,
    and what is held back and why (the report's own reasons, never re-read from text)."""
    sched = reports.schedule(s, timedelta(days=7))
    seqs = {
        q.slug: WeekSequence(q.slug, q.name, describe_window(q))
        for q in s.scalars(select(Sequence).order_by(Sequence.slug))
    }
    labels: dict[str, tuple[int, datetime | None]] = {}
    for row in sched.rows:
        ws = seqs.get(row.sequence)
        if ws is None:
            continue
        for reason in reports.Held:
            if n := row.held.get(reason):
                ws.held.append((_WHY[reason], n))
        if row.slot is reports.Slot.PAUSED:
            continue
        order: tuple[int, datetime | None] = (0, None)
        label = "overdue, goes out now"
        if row.slot is not reports.Slot.NOW and row.start is not None:
            label, order = f"{row.start:%a %d %b}", (1, row.start)
        labels.setdefault(label, order)
        ws.per_when[label] = ws.per_when.get(label, 0) + row.count
        ws.steps.setdefault(label, Counter())[row.step] += row.count
    for ws in seqs.values():
        ws.held = _summed(ws.held)
    days = sorted(labels, key=lambda d: (labels[d][0], labels[d][1] or sched.at))
    return Week(days, list(seqs.values()))


def _summed(held: list[tuple[str, int]]) -> list[tuple[str, int]]:
    total: Counter[str] = Counter()
    for why, n in held:
        total[why] += n
    return list(total.items())


def describe_window(seq: Sequence) -> str:
    w = window_of(seq)
    days = ", ".join(DAYS[d] for d in sorted(w.days)) if len(w.days) < 7 else "every day"
    text = f"{w.start:%H:%M}-{w.end:%H:%M} {days}, in each reader's zone"
    if seq.config.quiet_days:
        text += "; quiet days: " + ", ".join(str(d) for d in seq.config.quiet_days)
    return text


# --- readers --------------------------------------------------------------------------


def find_reader(s: Session, address: str) -> str | None:
    """The public id of the person with exactly this address (by its blind index)."""
    try:
        index = email_index(normalize_email(address))
    except Exception:  # not an address at all: nobody has it
        return None
    return s.scalar(select(Subscriber.public_id).where(Subscriber.email_index == index))


@dataclass(frozen=True)
class ReaderRow:
    public_id: str
    id: int
    email: str
    status: str
    created_at: str


@dataclass(frozen=True)
class ReadersPage:
    rows: list[ReaderRow]
    next_before: int | None


def readers_page(s: Session, status: str | None, before: int | None) -> ReadersPage:
    """The newest readers first, PAGE at a time (before an id, to page back)."""
    q = select(Subscriber).order_by(Subscriber.id.desc()).limit(PAGE + 1)
    if status:
        q = q.where(Subscriber.status == status)
    if before:
        q = q.where(Subscriber.id < before)
    subs = list(s.scalars(q))
    more = len(subs) > PAGE
    subs = subs[:PAGE]
    rows = [ReaderRow(x.public_id, x.id, x.email, str(x.status), local(x.created_at)) for x in subs]
    return ReadersPage(rows, subs[-1].id if more and subs else None)


@dataclass(frozen=True)
class Moment:
    at: str
    what: str
    sequence: str | None
    detail: str


@dataclass(frozen=True)
class Next:
    sequence: str
    status: str
    step: str | None
    due: str
    why: str


@dataclass(frozen=True)
class Timeline:
    public_id: str
    id: int
    email: str
    first_name: str | None
    status: str
    timezone: str
    consents: list[dict[str, Any]]
    moments: list[Moment]
    upcoming: list[Next]
    sequences: list[str]  # the sequences they are in (for "take out of")


def timeline(s: Session, public_id: str) -> Timeline:
    sub = reader_row(s, public_id)
    zone = sub.timezone or "(the sequence's zone)"
    slugs = {i: slug for i, slug in s.execute(select(Sequence.id, Sequence.slug))}
    consents = [
        {
            "at": local(c.created_at),
            "confirmed_at": local(c.confirmed_at),
            "sequence": slugs.get(c.sequence_id, "") if c.sequence_id else "",
            "text": c.consent_text,
            "where": c.article or "",
            "how": c.source,
        }
        for c in s.scalars(
            select(Consent).where(Consent.subscriber_id == sub.id).order_by(Consent.id)
        )
    ]
    moments = _moments(s, sub, slugs)
    enrollments = list(
        s.scalars(
            select(Enrollment).where(Enrollment.subscriber_id == sub.id).order_by(Enrollment.id)
        )
    )
    return Timeline(
        sub.public_id,
        sub.id,
        sub.email,
        sub.first_name,
        str(sub.status),
        zone,
        consents,
        moments,
        [_next(sub, e) for e in enrollments],
        [slugs[e.sequence_id] for e in enrollments],
    )


def _moments(s: Session, sub: Subscriber, slugs: dict[int, str]) -> list[Moment]:
    keys = {i: key for i, key in s.execute(select(Step.id, Step.key))}
    out: list[tuple[datetime, Moment]] = []
    for d, seq_id in s.execute(
        select(Delivery, Enrollment.sequence_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(Enrollment.subscriber_id == sub.id)
    ):
        at = d.sent_at or d.due_at
        what = {
            DeliveryStatus.SENT: "email sent",
            DeliveryStatus.FAILED: "email failed",
            DeliveryStatus.QUEUED: "email queued",
            DeliveryStatus.CANCELLED: "email cancelled",
        }[d.status]
        detail = keys.get(d.step_id, "")
        if d.error and d.status != DeliveryStatus.SENT:
            detail += f" ({d.error})"
        out.append((at, Moment(local(at), what, slugs.get(seq_id), detail)))
    for ev in s.scalars(select(Event).where(Event.subscriber_id == sub.id)):
        if ev.kind in (EventKind.SENT_ERASED, EventKind.FAILED_ERASED):
            continue
        step = keys.get(ev.step_id) if ev.step_id else None
        detail = ", ".join(str(x) for x in (step, reports_detail(ev.data)) if x)
        out.append(
            (
                ev.created_at,
                Moment(
                    local(ev.created_at),
                    ev.kind.replace("_", " "),
                    slugs.get(ev.sequence_id) if ev.sequence_id else None,
                    detail,
                ),
            )
        )
    out.sort(key=lambda pair: pair[0])
    return [m for _, m in out]


def reports_detail(data: dict[str, Any] | None) -> str:
    from nurture.subscribers.queries import detail

    return detail(data)


def _next(sub: Subscriber, e: Enrollment) -> Next:
    seq = e.sequence
    step = e.next_step.key if e.next_step is not None else None
    due = local(e.next_due_at)
    if e.status == EnrollmentStatus.PAUSED:
        why = "paused: nothing is sent until resumed"
    elif e.status != EnrollmentStatus.ACTIVE:
        why = f"{e.status}: nothing more is sent"
        step, due = None, ""
    elif seq.status == SequenceStatus.PAUSED:
        why = "held: the sequence is paused"
    elif e.next_due_at is None:
        why = "being sent now" if step is None else "waiting"
    else:
        tz = reader_zone(sub.timezone, seq.config.timezone)
        why = f"due in the send window ({describe_window(seq)}), zone {tz}"
        after = e.last_sent_at or e.started_at
        if (
            seq.config.quiet_days
            and after is not None
            and e.next_step is not None
            and pushed_by_quiet_day(
                window_of(seq),
                tz,
                after,
                timedelta(seconds=e.next_step.delay_seconds),
                e.next_due_at,
            )
        ):
            why += "; moved past a quiet day"
    return Next(seq.slug, str(e.status), step, due, why)


# --- sequences ------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceView:
    slug: str
    name: str
    status: str
    archived: bool
    window: str
    steps: tuple[reports.StepFunnel, ...]


def sequences(s: Session) -> list[SequenceView]:
    stats = {st.slug: st for st in reports.stats(s)}
    out = []
    for seq in s.scalars(select(Sequence).order_by(Sequence.slug)):
        st = stats.get(seq.slug)
        out.append(
            SequenceView(
                seq.slug,
                seq.name,
                str(seq.status),
                seq.archived_at is not None,
                describe_window(seq),
                st.steps if st else (),
            )
        )
    return out


def step_html(s: Session, slug: str, key: str) -> str:
    """The step's email for a sample reader (no name, links that name no one)."""
    seq = get_sequence(s, slug)
    step = next((x for x in live_steps(s, seq.id) if x.key == key), None)
    if step is None:
        raise NotFound(f"no step {key!r} in {slug}")
    msg = compose(
        seq, step, public_id=tokens.NO_ONE, email="reader@example.com", first_name=None, test=False
    )
    part = msg.get_body(("html",))
    return str(part.get_content()) if part is not None else ""


# --- failed deliveries ----------------------------------------------------------------


@dataclass(frozen=True)
class FailedRow:
    id: int
    sequence: str
    step: str
    reader: str  # public id: the list carries no address
    attempts: int
    at: str
    error: str


def failed_deliveries(s: Session, limit: int = 200) -> list[FailedRow]:
    q = (
        select(Delivery, Sequence.slug, Step.key, Subscriber.public_id)
        .join(Step, Step.id == Delivery.step_id)
        .join(Sequence, Sequence.id == Step.sequence_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return [
        FailedRow(d.id, slug, key, pid, d.attempts, local(d.claimed_at), d.error or "")
        for d, slug, key, pid in s.execute(q)
    ]
