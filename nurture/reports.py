"""Reports for the operator: what will be sent, how each sequence does, deliverability, and
the delivery list the operator acts on. `nurture stats`, `schedule`, `deliveries list` and
the dashboard all read these, so the terminal and the web can never disagree.

Read only, and typed: every function returns frozen dataclasses holding counts and aware
datetimes, never text made for people; formatting is the caller's (nurture/cli/reports.py).
Acting on a delivery (retrying a failed send) is nurture/delivery/retry.py.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from sqlalchemy import Integer, and_, case, func, or_, select
from sqlalchemy.orm import Session

from nurture.clock import now, practice_zone
from nurture.context import current
from nurture.delivery.limits import next_utc_day, sent_today
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.events.models import Event, EventKind
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import SendWindow, pushed_by_quiet_day, reader_zone, window_of
from nurture.sequences.services import get_sequence
from nurture.sequences.settings import clicks_tracked
from nurture.subscribers.attribution import ATTRIBUTED, last_sent_step
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus

__all__ = [
    "COMPLAINT_LINE",
    "DayActivity",
    "Deferred",
    "Deliverability",
    "DeliveryRow",
    "Held",
    "HeldBack",
    "NextSend",
    "Schedule",
    "ScheduleRow",
    "SequenceFunnel",
    "Slot",
    "Stage",
    "StepFunnel",
    "activity",
    "deferred_among",
    "deliverability",
    "list_deliveries",
    "next_send",
    "schedule",
    "stats",
]

# --- schedule -------------------------------------------------------------------------


class Slot(enum.StrEnum):
    """Where a count of sends sits in the schedule, in this order."""

    NOW = "now"  # due already: the next dispatch pass takes them
    HOUR = "hour"  # in the hour starting at `start`
    DAY = "day"  # on the day starting at `start`
    PAUSED = "paused"  # not until someone resumes them (the sequence or the person)


class Held(enum.StrEnum):
    """Why a send goes later than its step's delay alone would send it."""

    WINDOW = "window"  # waits for the reader's send window
    QUIET_DAY = "quiet_day"  # a quiet day of the sequence pushed it on
    DAILY_LIMIT = "daily_limit"  # today's NURTURE_SEND_DAILY_LIMIT is spent
    PAUSED = "paused"  # the sequence, or this person's place in it, is paused


@dataclass(frozen=True)
class HeldBack:
    """Of a row's sends, how many are held back, per reason."""

    window: int = 0
    quiet_day: int = 0
    daily_limit: int = 0
    paused: int = 0

    @classmethod
    def of(cls, counts: Counter[Held]) -> HeldBack:
        return cls(**{reason.value: counts[reason] for reason in Held})

    def get(self, reason: Held) -> int:
        return int(getattr(self, reason.value))

    @property
    def total(self) -> int:
        return self.window + self.quiet_day + self.daily_limit + self.paused


@dataclass(frozen=True)
class ScheduleRow:
    slot: Slot
    start: datetime | None  # the hour or day (midnight), in the report's zone; else None
    first: datetime | None  # the earliest and latest send in it (for NOW and PAUSED: None)
    last: datetime | None
    sequence: str
    step: str
    position: int
    count: int
    held: HeldBack


@dataclass(frozen=True)
class Schedule:
    at: datetime  # when it was made (UTC)
    until: datetime
    zone: tzinfo  # the zone of every row's times (the practice's)
    hourly: bool  # rows per hour (two days ahead or less), else per day
    rows: tuple[ScheduleRow, ...]


def schedule(s: Session, within: timedelta, zone: tzinfo | None = None) -> Schedule:
    """Sends due within `within` from now, per sequence and step, per hour of the practice's
    zone (up to two days ahead) or per day. Held back (with why): a send that waits for the
    reader's window, one a quiet day pushed on, one today's daily limit cannot take (it waits
    for the next UTC day, as the workers make it) and, in their own slot, the paused ones.

    Counted in the database, per quarter hour (every zone's offset is a multiple of 15
    minutes, so a quarter hour lies in one hour and one day of any zone): a large list is a
    few hundred groups here, not a row per reader. Only sends near a quiet day are read one
    by one, to tell a quiet day's push from the window's."""
    at = now()
    zone = zone or practice_zone()
    hourly = within <= timedelta(days=2)
    until = at + within
    sequences = {q.id: q for q in s.scalars(select(Sequence))}
    quota = _DailyQuota(s, at)
    groups = _due_groups(s, at, until, quota.tomorrow)
    quiet = _quiet_pushed(s, sequences, at, until)
    slots, tally = _Slots(zone, hourly), _Tally()
    for g in sorted(groups, key=lambda g: g.first):
        seq = sequences[g.sequence_id]
        name = (seq.slug, g.position, g.step)
        if g.paused or seq.status == SequenceStatus.PAUSED:
            tally.add(_Key(Slot.PAUSED, None, *name), g, g.n, Counter({Held.PAUSED: g.n}))
            continue
        kept = quota.take(g.n, g.first, at_tomorrow=g.at_tomorrow)
        if kept < g.n:
            moved = g.n - kept
            at_midnight = g._replace(first=quota.tomorrow, last=quota.tomorrow)
            slot, start = slots.of(quota.tomorrow)
            key = _Key(slot, start, *name)
            tally.add(key, at_midnight, moved, Counter({Held.DAILY_LIMIT: moved}))
        if not kept:
            continue
        if g.overdue:
            tally.add(_Key(Slot.NOW, None, *name), g, kept, Counter())
            continue
        pushed = min(quiet.get((g.sequence_id, g.position, g.quarter), 0), kept) if g.late else 0
        why = Counter({Held.QUIET_DAY: pushed, Held.WINDOW: kept - pushed if g.late else 0})
        slot, start = slots.of(g.first)
        tally.add(_Key(slot, start, *name), g, kept, +why)
    return Schedule(at, until, zone, hourly, tally.rows(zone))


class _Tally:
    """The schedule's rows as they are counted: sends, why held, first and last, per key."""

    def __init__(self) -> None:
        self.counts: Counter[_Key] = Counter()
        self.held: dict[_Key, Counter[Held]] = {}
        self.spans: dict[_Key, tuple[datetime, datetime]] = {}

    def add(self, key: _Key, g: _Group, n: int, why: Counter[Held]) -> None:
        self.counts[key] += n
        if key.slot is not Slot.NOW:
            self.held.setdefault(key, Counter()).update(why)
        if key.start is not None:
            first, last = self.spans.get(key, (g.first, g.last))
            self.spans[key] = (min(first, g.first), max(last, g.last))

    def rows(self, zone: tzinfo) -> tuple[ScheduleRow, ...]:
        rows = []
        for key, n in sorted(self.counts.items(), key=lambda kv: kv[0].order()):
            span = self.spans.get(key)
            rows.append(
                ScheduleRow(
                    slot=key.slot,
                    start=key.start,
                    first=span[0].astimezone(zone) if span else None,
                    last=span[1].astimezone(zone) if span else None,
                    sequence=key.sequence,
                    step=key.step,
                    position=key.position,
                    count=n,
                    held=HeldBack.of(self.held.get(key, Counter())),
                )
            )
        return tuple(rows)


_SLOT_ORDER = {Slot.NOW: 0, Slot.HOUR: 1, Slot.DAY: 1, Slot.PAUSED: 2}
_NO_TIME = datetime.min.replace(tzinfo=UTC)
QUARTER = 900  # seconds


class _Key(NamedTuple):
    slot: Slot
    start: datetime | None
    sequence: str
    position: int
    step: str

    def order(self) -> tuple[int, datetime, str, int]:
        return (_SLOT_ORDER[self.slot], self.start or _NO_TIME, self.sequence, self.position)


class _Slots:
    """The hour or day of the zone an instant falls in, worked out once per quarter hour."""

    def __init__(self, zone: tzinfo, hourly: bool) -> None:
        self.zone, self.hourly = zone, hourly
        self.known: dict[int, tuple[Slot, datetime]] = {}

    def of(self, when: datetime) -> tuple[Slot, datetime]:
        quarter = int(when.timestamp()) // QUARTER
        found = self.known.get(quarter)
        if found is None:
            local = datetime.fromtimestamp(quarter * QUARTER, UTC).astimezone(self.zone)
            if self.hourly:
                found = (Slot.HOUR, local.replace(minute=0))
            else:
                found = (Slot.DAY, datetime.combine(local.date(), time(), self.zone))
            self.known[quarter] = found
        return found


class _Group(NamedTuple):
    """Due sends alike in everything the schedule shows: sequence, step, quarter hour, and
    whether they are paused, overdue, later than their delay alone, or at the daily limit's
    midnight."""

    sequence_id: int
    position: int
    step: str
    paused: bool
    overdue: bool
    late: bool
    at_tomorrow: bool
    quarter: int
    n: int
    first: datetime
    last: datetime


def _epoch(s: Session, column: Any) -> Any:
    """Seconds since 1970 of a stored instant, in SQL (SQLite keeps them as UTC text)."""
    if s.get_bind().dialect.name == "sqlite":
        return func.cast(func.strftime("%s", column), Integer)
    return func.floor(func.extract("epoch", column))


def _quarter(s: Session, epoch: Any) -> Any:
    """The quarter hour of seconds since 1970. SQLite divides integers whole (its floor() is
    missing from builds without the math functions)."""
    if s.get_bind().dialect.name == "sqlite":
        return epoch // QUARTER
    return func.floor(epoch / QUARTER)


def _times(s: Session) -> tuple[Any, Any]:
    """In SQL, as seconds: a send's due time, and the earliest its delay alone allows."""
    due = _epoch(s, Enrollment.next_due_at)
    earliest = _epoch(s, func.coalesce(Enrollment.last_sent_at, Enrollment.started_at))
    return due, earliest + Step.delay_seconds


def _due_where(until: datetime) -> Any:
    return and_(
        Subscriber.status == SubscriberStatus.CONFIRMED,
        Enrollment.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED]),
        Enrollment.next_due_at <= until,
    )


def _due_groups(s: Session, at: datetime, until: datetime, tomorrow: datetime) -> list[_Group]:
    """Each confirmed reader's next send due by `until`, paused ones included, in groups.
    Grouped by plain ids and flags (cheaper for the database than by the step's key); the
    steps' names are looked up here."""
    due, earliest = _times(s)
    columns = (
        Enrollment.sequence_id,
        Enrollment.next_step_id,
        Enrollment.status,
        Enrollment.next_due_at <= at,
        case((due > earliest, True), else_=False),
        Enrollment.next_due_at == tomorrow,
        _quarter(s, due),
    )
    query = (
        select(
            *columns,
            func.count(),
            func.min(Enrollment.next_due_at),
            func.max(Enrollment.next_due_at),
        )
        .join(Step, Step.id == Enrollment.next_step_id)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(_due_where(until))
        .group_by(*columns)
    )
    steps = {i: (pos, key) for i, pos, key in s.execute(select(Step.id, Step.position, Step.key))}
    return [
        _Group(
            seq_id,
            *steps[step_id],
            paused=status == EnrollmentStatus.PAUSED,
            overdue=bool(overdue),
            late=bool(late),
            at_tomorrow=bool(tomo),
            quarter=int(q),
            n=n,
            first=lo,
            last=hi,
        )
        for seq_id, step_id, status, overdue, late, tomo, q, n, lo, hi in s.execute(query)
    ]


def _quiet_pushed(
    s: Session, sequences: dict[int, Sequence], at: datetime, until: datetime
) -> Counter[tuple[int, int, int]]:
    """Per (sequence, step position, quarter hour): the sends a quiet day pushed there. Only
    sends whose earliest time and due time lie around a quiet date are read and checked."""
    pushed: Counter[tuple[int, int, int]] = Counter()
    due, earliest = _times(s)
    for seq in sequences.values():
        window = window_of(seq)
        if not window.quiet:
            continue
        # A reader's date is at most 14 hours ahead of UTC and 12 behind.
        near = [
            and_(due >= int(day_start) - 14 * 3600, earliest <= int(day_start) + 36 * 3600)
            for day_start in _quiet_dates(window, at, until)
        ]
        if not near:
            continue
        rows = s.execute(
            select(
                Step.position,
                Enrollment.next_due_at,
                func.coalesce(Enrollment.last_sent_at, Enrollment.started_at),
                Step.delay_seconds,
                Subscriber.timezone,
            )
            .join(Step, Step.id == Enrollment.next_step_id)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(
                _due_where(until),
                Enrollment.sequence_id == seq.id,
                Enrollment.status == EnrollmentStatus.ACTIVE,
                Enrollment.next_due_at > at,
                due > earliest,
                or_(*near),
            )
        )
        for position, due_at, after, delay, tz_name in rows:
            if due_at is None or after is None:  # not reached: the query asks for both
                continue
            tz = reader_zone(tz_name, seq.config.timezone)
            if pushed_by_quiet_day(window, tz, after, timedelta(seconds=delay), due_at):
                pushed[(seq.id, position, int(due_at.timestamp()) // QUARTER)] += 1
    return pushed


def _quiet_dates(window: SendWindow, at: datetime, until: datetime) -> list[float]:
    """The quiet dates around the horizon, as the UTC midnight that begins each."""
    day, last = (at - timedelta(days=2)).date(), (until + timedelta(days=2)).date()
    found = []
    while day <= last:
        if window.quiet.is_quiet(day):
            found.append(datetime.combine(day, time(), UTC).timestamp())
        day += timedelta(days=1)
    return found


@dataclass(frozen=True)
class NextSend:
    """What comes next for one person in one sequence, and why not sooner."""

    step: str
    due_at: datetime | None  # None: held with no time (an in-flight send taken back)
    held: Held | None  # why it goes later than its delay alone would send it
    paused_until: datetime | None  # the end of the reader's break, when that is why


def next_send(e: Enrollment) -> NextSend | None:
    """The enrollment's next email (None when nothing comes: ended, or none left), for one
    reader's timeline. The same reasons `schedule` counts."""
    if e.status not in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED) or e.next_step is None:
        return None
    step, due = e.next_step, e.next_due_at
    if e.status == EnrollmentStatus.PAUSED or e.sequence.status == SequenceStatus.PAUSED:
        return NextSend(step.key, due, Held.PAUSED, e.paused_until)
    after = e.last_sent_at or e.started_at
    limit = current().settings.send_daily_limit
    if due is None or after is None:
        return NextSend(step.key, due, None, None)
    if limit and due == next_utc_day(now()):
        return NextSend(step.key, due, Held.DAILY_LIMIT, None)
    delay = timedelta(seconds=step.delay_seconds)
    if due <= after + delay:
        return NextSend(step.key, due, None, None)
    window = window_of(e.sequence)
    tz = reader_zone(e.subscriber.timezone, e.sequence.config.timezone)
    quiet = window.quiet and pushed_by_quiet_day(window, tz, after, delay, due)
    return NextSend(step.key, due, Held.QUIET_DAY if quiet else Held.WINDOW, None)


class _DailyQuota:
    """Today's remaining NURTURE_SEND_DAILY_LIMIT, handed out in due order: a send beyond
    it waits for the next UTC day (as the workers make it), and one the workers already put
    back to midnight for the limit is shown as waiting too."""

    def __init__(self, s: Session, at: datetime) -> None:
        self.limit = current().settings.send_daily_limit
        self.tomorrow = next_utc_day(at)
        self.left = max(0, self.limit - sent_today(s, at)) if self.limit else 0

    def take(self, n: int, due: datetime, *, at_tomorrow: bool) -> int:
        """Of n sends due then (the next in due order), how many today's quota lets go."""
        if not self.limit or due > self.tomorrow:
            return n
        if at_tomorrow:
            return 0
        kept = min(n, self.left)
        self.left -= kept
        return kept


# --- stats ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFunnel:
    key: str
    position: int | None  # None: a removed step that still has history
    sent: int = 0
    failed: int = 0
    clicked: int | None = 0  # None: clicks are not tracked for this sequence
    unsubscribed: int = 0
    booked: int = 0
    # What came back (nurture/feedback/handling.py): per step whose email it was about.
    bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0
    replied: int = 0
    took_break: int = 0  # "take a break for two weeks" from this email's footer


# Which StepFunnel counter each attributed event kind adds to.
_STEP_COUNTER: dict[EventKind, str] = {
    EventKind.UNSUBSCRIBED: "unsubscribed",
    EventKind.BOOKED: "booked",
    EventKind.BOUNCED: "bounced",
    EventKind.SOFT_BOUNCED: "soft_bounced",
    EventKind.COMPLAINED: "complained",
    EventKind.REPLIED: "replied",
    EventKind.TOOK_BREAK: "took_break",
}
assert set(_STEP_COUNTER) == set(ATTRIBUTED)


@dataclass(frozen=True)
class Stage:
    """One stage of a funnel, with its share of the one before and of the first."""

    name: str  # "signed up", "confirmed", a step key, "booked"
    count: int
    of_previous: float | None  # None when the stage before counted nobody
    of_start: float | None


@dataclass(frozen=True)
class SequenceFunnel:
    slug: str
    name: str
    status: str
    signed_up: int  # everyone ever enrolled, people erased since included
    confirmed: int
    waiting: int  # signed up, not confirmed yet, and still here (not erased)
    clicks_tracked: bool
    steps: tuple[StepFunnel, ...] = ()

    @property
    def booked(self) -> int:
        """Bookings after an email of this sequence (each counted for the last one sent)."""
        return sum(st.booked for st in self.steps)

    def stages(self) -> tuple[Stage, ...]:
        """Signed up, confirmed, each live step (sent), booked."""
        counts = [("signed up", self.signed_up), ("confirmed", self.confirmed)]
        counts += [(st.key, st.sent) for st in self.steps if st.position is not None]
        counts.append(("booked", self.booked))
        stages, previous = [], None
        for name, n in counts:
            stages.append(Stage(name, n, _rate(n, previous), _rate(n, self.signed_up)))
            previous = n
        return tuple(stages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "status": self.status,
            "signed_up": self.signed_up,
            "confirmed": self.confirmed,
            "waiting": self.waiting,
            "booked": self.booked,
            "clicks_tracked": self.clicks_tracked,
            "stages": [vars(st) for st in self.stages()],
            "steps": [vars(st) for st in self.steps],
        }


def _rate(n: int, of: int | None) -> float | None:
    return n / of if of else None


def stats(s: Session, slug: str | None = None) -> list[SequenceFunnel]:
    """Per sequence: signed up, confirmed (and still waiting), then per step. An unsubscribe,
    break or booking counts for the last step sent before it; a bounce, complaint or reply
    for the email it was about."""
    seqs = [get_sequence(s, slug)] if slug else list(s.scalars(select(Sequence).order_by("slug")))
    if not seqs:
        return []
    ids = [q.id for q in seqs]
    steps = list(s.scalars(select(Step).where(Step.sequence_id.in_(ids)).order_by(Step.position)))
    step_ids = [st.id for st in steps]
    counted: Counter[tuple[int, str]] = Counter()
    _count_sends(s, step_ids, counted)
    _count_erased_sends(s, step_ids, counted)
    clicks = _count_clicks(s, step_ids)
    _count_attributed(s, step_ids, counted)
    people = _count_people(s, ids)
    result = []
    for seq in seqs:
        tracked = clicks_tracked(seq.config)
        funnel = [
            _step_funnel(st, counted, clicks.get(st.id, 0), tracked)
            for st in steps
            if st.sequence_id == seq.id
        ]
        # Removed steps appear only when they have history worth showing.
        funnel = [x for x in funnel if x.position is not None or x.sent or x.failed]
        funnel.sort(key=lambda x: (x.position is None, x.position or 0))
        came = people[seq.id]
        result.append(
            SequenceFunnel(
                slug=seq.slug,
                name=seq.name,
                status=seq.status,
                signed_up=came.signed_up,
                confirmed=came.confirmed,
                waiting=came.waiting,
                clicks_tracked=tracked,
                steps=tuple(funnel),
            )
        )
    return result


def _step_funnel(
    st: Step, counted: Counter[tuple[int, str]], clicks: int, tracked: bool
) -> StepFunnel:
    # Clicks recorded while tracking was on still show after it is switched off.
    return StepFunnel(
        st.key,
        st.position if st.removed_at is None else None,
        clicked=clicks if tracked or clicks else None,
        **{name: counted[(st.id, name)] for name in ("sent", "failed", *_STEP_COUNTER.values())},
    )


def _count_people(s: Session, seq_ids: list[int]) -> dict[int, _People]:
    """Per sequence: enrolled, confirmed, still waiting; people erased since (forget, the
    retention limit) still count as signed up, and as confirmed if they had confirmed."""
    people = {i: _People() for i in seq_ids}
    for seq_id, n, waiting in s.execute(
        select(
            Enrollment.sequence_id,
            func.count(),
            func.count().filter(Enrollment.status == EnrollmentStatus.PENDING),
        )
        .where(Enrollment.sequence_id.in_(seq_ids))
        .group_by(Enrollment.sequence_id)
    ):
        people[seq_id] = _People(n, n - waiting, waiting)
    erased = (EventKind.CONFIRMED_ERASED, EventKind.UNCONFIRMED_ERASED)
    for erased_from, kind, n in s.execute(
        select(Event.sequence_id, Event.kind, func.count())
        .where(Event.kind.in_(erased), Event.sequence_id.in_(seq_ids))
        .group_by(Event.sequence_id, Event.kind)
    ):
        if erased_from is None:
            continue
        was = people[erased_from]
        confirmed = n if kind == EventKind.CONFIRMED_ERASED else 0
        people[erased_from] = _People(was.signed_up + n, was.confirmed + confirmed, was.waiting)
    return people


@dataclass(frozen=True)
class _People:
    signed_up: int = 0
    confirmed: int = 0
    waiting: int = 0


def _count_sends(s: Session, step_ids: list[int], counted: Counter[tuple[int, str]]) -> None:
    for step_id, status, n in s.execute(
        select(Delivery.step_id, Delivery.status, func.count())
        .where(
            Delivery.step_id.in_(step_ids),
            Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.FAILED]),
        )
        .group_by(Delivery.step_id, Delivery.status)
    ):
        counted[(step_id, "sent" if status == DeliveryStatus.SENT else "failed")] += n


def _count_erased_sends(s: Session, step_ids: list[int], counted: Counter[tuple[int, str]]) -> None:
    # People erased (forget, the retention limit) leave anonymous counts of their sends.
    erased = {EventKind.SENT_ERASED: "sent", EventKind.FAILED_ERASED: "failed"}
    for step_id, kind, n in s.execute(
        select(Event.step_id, Event.kind, func.count())
        .where(Event.kind.in_(list(erased)), Event.step_id.in_(step_ids))
        .group_by(Event.step_id, Event.kind)
    ):
        if step_id is not None:
            counted[(step_id, erased[EventKind(kind)])] += n


def _count_clicks(s: Session, step_ids: list[int]) -> dict[int, int]:
    # One per email clicked (several clicks on one email count once).
    return {
        step_id: with_delivery + without
        for step_id, with_delivery, without in s.execute(
            select(
                Event.step_id,
                func.count(func.distinct(Event.delivery_id)),
                func.count().filter(Event.delivery_id.is_(None)),
            )
            .where(Event.kind == EventKind.CLICKED, Event.step_id.in_(step_ids))
            .group_by(Event.step_id)
        )
        if step_id is not None
    }


def _count_attributed(s: Session, step_ids: list[int], counted: Counter[tuple[int, str]]) -> None:
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
        .where(attributed.c.step_id.in_(step_ids))
        .group_by(attributed.c.kind, attributed.c.step_id)
    ):
        counted[(step_id, _STEP_COUNTER[EventKind(kind)])] += n


# --- deliverability and activity -------------------------------------------------------

# Gmail's bulk-sender line: keep spam complaints under 0.3% of mail delivered (its sender
# guidelines; 0.1% is the recommended ceiling). The same line is drawn for hard bounces.
COMPLAINT_LINE = 0.003


@dataclass(frozen=True)
class Deliverability:
    since: datetime
    sent: int  # emails sent since then
    hard_bounced: int  # people whose mail bounced for good since then
    complained: int  # spam complaints since then
    failed: int  # deliveries failed for good and not retried (any age): deliveries list

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.hard_bounced, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return _rate(self.complained, self.sent)

    def over_line(self, rate: float | None) -> bool:
        return rate is not None and rate >= COMPLAINT_LINE


def deliverability(s: Session, days: int = 30) -> Deliverability:
    """Hard bounces and complaints against emails sent, over the last `days` days."""
    since = now() - timedelta(days=days)
    sent = s.scalar(
        select(func.count()).where(
            Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since
        )
    )
    kinds = dict(
        s.execute(
            select(Event.kind, func.count())
            .where(
                Event.kind.in_([EventKind.BOUNCED, EventKind.COMPLAINED]), Event.created_at >= since
            )
            .group_by(Event.kind)
        ).all()
    )
    failed = s.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.FAILED))
    return Deliverability(
        since=since,
        sent=sent or 0,
        hard_bounced=kinds.get(EventKind.BOUNCED, 0),
        complained=kinds.get(EventKind.COMPLAINED, 0),
        failed=failed or 0,
    )


@dataclass(frozen=True)
class DayActivity:
    day: date  # in the practice's zone
    signed_up: int
    booked: int


def activity(
    s: Session, days: int = 90, slug: str | None = None, zone: tzinfo | None = None
) -> tuple[DayActivity, ...]:
    """Signups (enrollments made) and bookings per day of the practice's zone, for the last
    `days` days up to today, every day listed (zeros too)."""
    zone = zone or practice_zone()
    today = now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time(), zone).astimezone(UTC)
    signups = [Enrollment.created_at >= since]
    bookings = [Event.kind == EventKind.BOOKED, Event.created_at >= since]
    if slug:
        seq = get_sequence(s, slug)
        signups.append(Enrollment.sequence_id == seq.id)
        people = select(Enrollment.subscriber_id).where(Enrollment.sequence_id == seq.id)
        bookings.append(Event.subscriber_id.in_(people))
    signed = _per_day(s, Enrollment.created_at, signups, zone)
    booked = _per_day(s, Event.created_at, bookings, zone)
    return tuple(
        DayActivity(d, signed[d], booked[d])
        for d in (first + timedelta(days=i) for i in range(days))
    )


def _per_day(s: Session, column: Any, where: list[Any], zone: tzinfo) -> Counter[date]:
    """Rows per day of the zone: counted per quarter hour in the database (each lies in one
    day of any zone), then put on their days here."""
    quarter = _quarter(s, _epoch(s, column))
    days: Counter[date] = Counter()
    for q, n in s.execute(select(quarter, func.count()).where(*where).group_by(quarter)):
        days[datetime.fromtimestamp(int(q) * QUARTER, UTC).astimezone(zone).date()] += n
    return days


# --- deliveries -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    sequence: str
    step: str
    email: str
    status: DeliveryStatus
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    next_try: datetime | None  # a deferred send: when the next dispatch pass tries it again
    error: str | None


def list_deliveries(s: Session, status: str | None, limit: int) -> list[DeliveryRow]:
    """Recent deliveries, newest first (only `status` ones when given)."""
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
        DeliveryRow(
            id=d.id,
            sequence=slug,
            step=key,
            email=sub.email,
            status=d.status,
            attempts=d.attempts,
            due_at=d.due_at,
            sent_at=d.sent_at,
            next_try=_next_try(d),
            error=d.error,
        )
        for d, slug, key, sub in s.execute(q)
    ]


def _next_try(d: Delivery) -> datetime | None:
    """When a deferred delivery (queued, tried and refused for now) is tried again: the next
    dispatch pass after its backed-off lease runs out."""
    if d.status == DeliveryStatus.QUEUED and d.attempts and d.lease_until is not None:
        return d.lease_until
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
