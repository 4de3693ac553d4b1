"""When a step is due: a delay after the previous send, then the first moment inside the
subscriber's send window (local time, allowed weekdays), in their own IANA time zone.

All arithmetic on instants is done in UTC; local wall time is only used to test "is this
inside the window" and to name the start of a window, which is then converted back to UTC.
That keeps delays exact across DST changes (a "2h" delay is two real hours) while the
window follows the local clock (09:00 stays 09:00 local after the change).

Quiet days (a sequence's `quiet_days`) are part of the same rule: an instant is sendable when
it lies inside the window AND its date on the reader's own calendar is not a quiet day. For a
window that crosses midnight this is decided per instant, so 23:00 on the evening before
Christmas may send while 00:30 on Christmas morning may not.

The last part applies the rule to one sequence and reader: the sequence's window and quiet
days, the reader's zone (else the sequence's), and the immediate first step.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DELAY = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 0, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_delay(text: str | int) -> timedelta:
    """`0`, `30m`, `2h`, `3d` (also `45s`, `1w`). A bare number other than 0 is refused:
    "3" could mean minutes or days, and guessing wrong mails someone at the wrong time."""
    m = _DELAY.match(str(text))
    if not m:
        raise ValueError(f"bad delay {text!r}: use 0, 30m, 2h or 3d")
    amount, unit = int(m.group(1)), m.group(2)
    if unit == "" and amount != 0:
        raise ValueError(f"bad delay {text!r}: add a unit (m, h or d), e.g. {amount}d")
    return timedelta(seconds=amount * _UNITS[unit])


def format_delay(seconds: int) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return "0"


@functools.lru_cache(maxsize=1024)
def reader_zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The reader's own time zone; else the sequence's (`fallback`); else UTC. A name that
    is no longer valid (a zone database update) falls through rather than failing a send.
    Remembered: it is asked twice for every message sent, and the zone database changes
    only with a new process."""
    for candidate in (name, fallback, "UTC"):
        if candidate and is_valid_timezone(candidate):
            return ZoneInfo(candidate)
    return ZoneInfo("UTC")


def is_valid_timezone(name: str) -> bool:
    if not name or name not in _zones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_FULL_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# How far ahead next_open looks. A date recurs on every weekday within 11 years, so any
# rule that leaves some day open opens within this span; validation refuses the rest.
_SEARCH_DAYS = 12 * 366


def parse_quiet_day(text: object) -> date | tuple[int, int]:
    """`MM-DD` (every year) as (month, day), or `YYYY-MM-DD` (once) as a date. `02-29` is a
    real yearly date: it is quiet in leap years only."""
    if isinstance(text, date) and not isinstance(text, datetime):  # YAML reads 2027-04-05
        return text
    raw = str(text).strip()
    usage = "use MM-DD (every year) or YYYY-MM-DD (once)"
    if m := _MONTH_DAY.match(raw):
        month, day = int(m.group(1)), int(m.group(2))
        try:
            date(2000, month, day)  # a leap year: 02-29 exists
        except ValueError:
            raise ValueError(f"quiet day {raw!r} is not a date ({usage})") from None
        return (month, day)
    if _FULL_DATE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"quiet day {raw!r} is not a date ({usage})") from None
    raise ValueError(f"bad quiet day {raw!r}: {usage}")


@dataclass(frozen=True)
class QuietDays:
    """Dates on the reader's own calendar when nothing is sent."""

    yearly: frozenset[tuple[int, int]] = frozenset()
    once: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, items: list[object] | tuple[object, ...] | None) -> QuietDays:
        yearly: set[tuple[int, int]] = set()
        once: set[date] = set()
        for item in items or ():
            parsed = parse_quiet_day(item)
            if isinstance(parsed, date):
                once.add(parsed)
            else:
                yearly.add(parsed)
        if len(yearly - {(2, 29)}) >= 365:
            raise ValueError("quiet_days leave no day of the year to send on")
        return cls(frozenset(yearly), frozenset(once))

    def __bool__(self) -> bool:
        return bool(self.yearly or self.once)

    def is_quiet(self, day: date) -> bool:
        return day in self.once or (day.month, day.day) in self.yearly


@dataclass(frozen=True)
class SendWindow:
    start: time = time(0, 0)
    end: time = time(23, 59, 59, 999999)  # exclusive; end <= start means "crosses midnight"
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday
    quiet: QuietDays = QuietDays()

    @classmethod
    def from_config(
        cls, cfg: dict[str, object] | None, quiet_days: list[object] | None = None
    ) -> SendWindow:
        quiet = QuietDays.parse(quiet_days)
        if not cfg:
            return cls(quiet=quiet)
        cfg = {k: v for k, v in cfg.items() if k != "first_step_immediately"}
        start = time.fromisoformat(str(cfg.get("start", "00:00")))
        end_text = str(cfg.get("end", "24:00"))
        end = time(23, 59, 59, 999999) if end_text in {"24:00", "24:00:00"} else None
        end = end or time.fromisoformat(end_text)
        days_cfg = cfg.get("days") or DAYS
        if not isinstance(days_cfg, list | tuple):
            raise ValueError("send_window.days must be a list like [mon, tue, wed]")
        days = set()
        for d in days_cfg:
            name = str(d).strip().lower()[:3]
            if name not in DAYS:
                raise ValueError(f"unknown weekday {d!r} in send_window.days (use mon..sun)")
            days.add(DAYS.index(name))
        if not days:
            raise ValueError("send_window.days must name at least one day")
        if start == end:
            raise ValueError("send_window start and end must differ")
        return cls(start, end, frozenset(days), quiet)

    def without_quiet_days(self) -> SendWindow:
        return SendWindow(self.start, self.end, self.days)

    def _contains_local(self, local: datetime) -> bool:
        return self._in_window(local) and not self.quiet.is_quiet(local.date())

    def _in_window(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None, fold=0)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # Crosses midnight: the part after midnight belongs to the previous day's window.
        if t >= self.start:
            return local.weekday() in self.days
        if t < self.end:
            return (local.weekday() - 1) % 7 in self.days
        return False

    def contains(self, instant: datetime, tz: ZoneInfo) -> bool:
        return self._contains_local(instant.astimezone(tz))

    def next_open(self, earliest: datetime, tz: ZoneInfo) -> datetime:
        """The first instant >= earliest that lies inside the window, in UTC."""
        earliest = earliest.astimezone(UTC)
        if self.contains(earliest, tz):
            return earliest
        for candidate in _openings(self, tz, earliest.astimezone(tz).date()):
            if candidate >= earliest:
                return candidate
        raise ValueError("the send window and quiet days leave no time to send")

    def openings_from(self, local_day: date, tz: ZoneInfo) -> Iterator[datetime]:
        """Where sendable stretches begin, from the day before `local_day` on, in the order
        next_open tries them: where a window opens or, on a window that runs past midnight,
        the first midnight after a quiet day; day by day."""
        for offset in range(-1, _SEARCH_DAYS):
            day = local_day + timedelta(days=offset)
            if self.quiet.is_quiet(day):
                continue
            for candidate in (_midnight(day, tz), self._window_start(day, tz)):
                if candidate is not None and self.contains(candidate, tz):
                    yield candidate

    def _window_start(self, day: date, tz: ZoneInfo) -> datetime | None:
        if day.weekday() not in self.days:
            return None
        naive = datetime.combine(day, self.start)
        # The start may not exist (spring forward: 02:30 is skipped) or exist twice (fall
        # back). Take the earliest real instant at or after the local start that is inside.
        for fold in (0, 1):
            instant = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
            back = instant.astimezone(tz).replace(tzinfo=None)
            if back == naive and self._in_window(instant.astimezone(tz)):
                return instant
        # Skipped hour: the wall clock jumps past the start; the first valid local minute
        # after the gap is where the window really opens that day.
        probe = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        for _ in range(24 * 4):
            if self._in_window(probe.astimezone(tz)):
                return probe
            probe += timedelta(minutes=15)
        return None


class _Remembered:
    """An iterator's items, computed once, as far as anyone has asked, for every reader:
    thread-safe (a worker's threads share them)."""

    def __init__(self, items: Iterator[datetime]) -> None:
        self._items = items
        self._seen: list[datetime] = []
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[datetime]:
        i = 0
        while True:
            if i == len(self._seen):
                with self._lock:
                    if i == len(self._seen):
                        item = next(self._items, None)
                        if item is None:
                            return
                        self._seen.append(item)
            yield self._seen[i]
            i += 1


@functools.lru_cache(maxsize=4096)
def _openings(window: SendWindow, tz: ZoneInfo, local_day: date) -> _Remembered:
    # Every send of a reader's step asks when their next step may go: the answer's search
    # (a dozen time zone conversions a day tried) is the same for everyone in that zone
    # whose earliest time falls on that local day, so it is made once per day and zone.
    return _Remembered(window.openings_from(local_day, tz))


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local date (fold=0 takes the first of a repeated midnight;
    a skipped midnight lands on the first minute after the gap, still on that date)."""
    return datetime.combine(day, time(0)).replace(tzinfo=tz, fold=0).astimezone(UTC)


def due_at(after: datetime, delay: timedelta, window: SendWindow, tz: ZoneInfo) -> datetime:
    return window.next_open(after.astimezone(UTC) + delay, tz)


def pushed_by_quiet_day(
    window: SendWindow, tz: ZoneInfo, after: datetime, delay: timedelta, due: datetime
) -> bool:
    """Would this send have gone earlier, on a day that is quiet, without the quiet days?"""
    plain = due_at(after, delay, window.without_quiet_days(), tz)
    return plain < due and window.quiet.is_quiet(plain.astimezone(tz).date())


# --- for one sequence and reader ------------------------------------------------------


class _SendingRules(Protocol):
    """What scheduling reads of a sequence's settings (nurture/sequences/settings.py)."""

    @property
    def window(self) -> SendWindow: ...
    @property
    def timezone(self) -> str: ...
    @property
    def first_step_immediately(self) -> bool: ...


class ScheduledSequence(Protocol):
    """A sequence as scheduling sees it (the model, nurture/sequences/models.py, is one):
    declared here so that this rule depends on nothing above it."""

    @property
    def config(self) -> _SendingRules: ...


def window_of(seq: ScheduledSequence) -> SendWindow:
    """The sequence's whole sending rule: its window and its quiet days."""
    return seq.config.window


def due_for(
    seq: ScheduledSequence, subscriber_tz: str | None, after: datetime, delay_seconds: int
) -> datetime:
    """A later step: its delay after `after` (the previous send), then the reader's window."""
    tz = reader_zone(subscriber_tz, seq.config.timezone)
    return due_at(after, timedelta(seconds=delay_seconds), window_of(seq), tz)


def first_step_immediately(seq: ScheduledSequence) -> bool:
    return seq.config.first_step_immediately


def is_immediate_first(seq: ScheduledSequence, delay_seconds: int) -> bool:
    """The immediate first step: a first step without delay goes out right after
    confirmation, whatever the hour (the reader is waiting for it), unless the sequence's
    send_window.first_step_immediately says otherwise. Later steps keep to the window."""
    return delay_seconds == 0 and first_step_immediately(seq)


def first_due(
    seq: ScheduledSequence, subscriber_tz: str | None, started: datetime, delay_seconds: int
) -> datetime:
    """When the first step is due: right away if it is an immediate first step, else its
    delay after the start, inside the reader's window."""
    if is_immediate_first(seq, delay_seconds):
        return started
    return due_for(seq, subscriber_tz, started, delay_seconds)
