"""Quiet days: reader-local dates with no mail, part of the same rule as the send window.
Properties (hypothesis) like the window's, DST changes, windows across midnight, the
welcome that still goes at once, validation, and what `apply --dry-run` and `schedule` say."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.sequences.schedule import QuietDays, SendWindow, due_at
from nurture.sequences.services import get_sequence
from nurture.sequences.spec import SpecError, load_folder
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment
from tests.cli_helpers import drain, run, sequence_copy
from tests.test_schedule import ZONES, instants, windows

NY = ZoneInfo("America/New_York")

month_days = st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)).map(
    lambda d: (d.month, d.day)
)
quiet_rules = st.builds(
    QuietDays,
    yearly=st.frozensets(month_days, max_size=40),
    once=st.frozensets(st.dates(date(2025, 1, 1), date(2029, 6, 30)), max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(
    after=instants,
    delay=st.integers(0, 30 * 86400),
    window=windows(),
    quiet=quiet_rules,
    tz=st.sampled_from(ZONES),
)
def test_a_due_time_is_never_on_a_quiet_day_nor_later_than_needed(
    after: datetime, delay: int, window: SendWindow, quiet: QuietDays, tz: str
) -> None:
    zone = ZoneInfo(tz)
    rule = SendWindow(window.start, window.end, window.days, quiet)
    due = due_at(after, timedelta(seconds=delay), rule, zone)
    assert due >= after + timedelta(seconds=delay)
    assert not quiet.is_quiet(due.astimezone(zone).date())
    assert window.contains(due, zone)
    # Not later than needed: no earlier sendable instant, probed every 15 minutes.
    probe = after + timedelta(seconds=delay)
    while probe + timedelta(minutes=15) < due:
        probe += timedelta(minutes=15)
        if rule.contains(probe, zone):
            assert due - probe <= timedelta(minutes=15)
            break


@settings(max_examples=200, deadline=None)
@given(after=instants, quiet=quiet_rules, tz=st.sampled_from(ZONES))
def test_without_quiet_days_nothing_changes(after: datetime, quiet: QuietDays, tz: str) -> None:
    zone = ZoneInfo(tz)
    window = SendWindow(time(9), time(11), frozenset(range(7)), quiet)
    due = due_at(after, timedelta(days=1), window, zone)
    plain = due_at(after, timedelta(days=1), window.without_quiet_days(), zone)
    assert due >= plain
    if not quiet.is_quiet(plain.astimezone(zone).date()):
        assert due == plain


def test_fall_back_day_is_quiet_then_next_morning_local() -> None:
    # 2026-11-01: New York falls back from 02:00 EDT to 01:00 EST, and is a quiet day.
    rule = SendWindow(time(9), time(11), quiet=QuietDays.parse(["11-01"]))
    sent = datetime(2026, 10, 31, 9, 30, tzinfo=NY)
    due = due_at(sent, timedelta(days=1), rule, NY)
    assert due.astimezone(NY) == datetime(2026, 11, 2, 9, 0, tzinfo=NY)
    assert due == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # EST now: UTC-5


def test_spring_forward_quiet_day_with_a_start_that_does_not_exist() -> None:
    # 2026-03-08 02:30 never happens in New York; 03-08 is quiet anyway, 03-09 02:30 exists.
    rule = SendWindow(time(2, 30), time(4), quiet=QuietDays.parse(["2026-03-08"]))
    due = due_at(datetime(2026, 3, 7, 12, tzinfo=NY), timedelta(hours=1), rule, NY)
    assert due.astimezone(NY) == datetime(2026, 3, 9, 2, 30, tzinfo=NY)
    # Without the quiet day the window opens at the first minute after the gap.
    plain = due_at(
        datetime(2026, 3, 7, 12, tzinfo=NY), timedelta(hours=1), rule.without_quiet_days(), NY
    )
    assert plain.astimezone(NY) == datetime(2026, 3, 8, 3, 0, tzinfo=NY)


def test_window_across_the_readers_midnight() -> None:
    # 22:00-02:00 in Sydney; Christmas Day is quiet on the reader's own calendar.
    sydney = ZoneInfo("Australia/Sydney")
    rule = SendWindow(time(22), time(2), quiet=QuietDays.parse(["12-25"]))
    # Christmas Eve 23:30 is still the 24th: it sends.
    eve = datetime(2026, 12, 24, 23, 30, tzinfo=sydney)
    assert due_at(eve, timedelta(0), rule, sydney) == eve
    # 00:30 on the 25th is inside the window that opened on the 24th, but on a quiet date;
    # the 25th's own window is quiet until midnight, so the next send is 00:00 on the 26th.
    night = datetime(2026, 12, 25, 0, 30, tzinfo=sydney)
    due = due_at(night, timedelta(0), rule, sydney)
    assert due.astimezone(sydney) == datetime(2026, 12, 26, 0, 0, tzinfo=sydney)
    # In UTC the reader's 26th begins on the 25th: the rule is the reader's date, not UTC's.
    assert due == datetime(2026, 12, 25, 13, 0, tzinfo=UTC)


def test_window_across_midnight_and_a_dst_change() -> None:
    # 2026-04-05 03:00 Sydney falls back to 02:00. Window 23:00-03:00, the 5th is quiet.
    sydney = ZoneInfo("Australia/Sydney")
    rule = SendWindow(time(23), time(3), quiet=QuietDays.parse(["2026-04-05"]))
    due = due_at(datetime(2026, 4, 4, 23, 30, tzinfo=sydney), timedelta(hours=1), rule, sydney)
    # 00:30 on the 5th is quiet; the 5th's window (23:00) is quiet up to midnight too.
    assert due.astimezone(sydney) == datetime(2026, 4, 6, 0, 0, tzinfo=sydney)
    assert due == datetime(2026, 4, 5, 14, 0, tzinfo=UTC)  # AEST after the change: UTC+10


def _folder(tmp_path: Path, quiet: str) -> Path:
    folder = sequence_copy(tmp_path)
    path = folder / "sequence.yaml"
    path.write_text(path.read_text().replace("steps:\n", f"quiet_days: {quiet}\nsteps:\n"))
    return folder


@pytest.mark.parametrize(
    ("quiet", "message"),
    [
        ('["12-25", "02-30"]', "quiet_days.1: quiet day '02-30' is not a date"),
        ('["25/12"]', "quiet_days.0: bad quiet day '25/12': use MM-DD (every year) or YYYY-MM-DD"),
        ('["2027-02-29"]', "quiet_days.0: quiet day '2027-02-29' is not a date"),
        ('["13-01"]', "quiet_days.0: quiet day '13-01' is not a date"),
        ('"12-25"', "quiet_days: Input should be a valid list"),
    ],
)
def test_bad_quiet_days_are_refused_with_file_and_line(
    tmp_path: Path, quiet: str, message: str
) -> None:
    folder = _folder(tmp_path, quiet)
    with pytest.raises(SpecError) as err:
        load_folder(folder)
    assert str(err.value).startswith(f"{folder / 'sequence.yaml'}:10: ")
    assert message in str(err.value)


def test_quiet_days_read_yaml_dates_and_leap_days(tmp_path: Path) -> None:
    # Unquoted, YAML reads 2027-04-05 as a date; 02-29 is quiet in leap years only.
    spec = load_folder(_folder(tmp_path, "[12-25, 2027-04-05, 02-29]"))
    assert spec.quiet_days == ["12-25", "2027-04-05", "02-29"]
    quiet = spec.window.quiet
    assert quiet.is_quiet(date(2030, 12, 25)) and quiet.is_quiet(date(2027, 4, 5))
    assert not quiet.is_quiet(date(2028, 4, 5)) and quiet.is_quiet(date(2028, 2, 29))


def test_a_year_without_a_sendable_day_is_refused(tmp_path: Path) -> None:
    every = [
        f"{d.month:02d}-{d.day:02d}" for d in (date(2001, 1, 1) + timedelta(n) for n in range(365))
    ]
    with pytest.raises(SpecError, match="quiet_days leave no day of the year to send on"):
        load_folder(_folder(tmp_path, "[" + ", ".join(every) + "]"))


def _next_due(email: str) -> datetime:
    with transaction() as s:
        sub = get_subscriber(s, email)
        e = s.scalar(select(Enrollment).where(Enrollment.subscriber_id == sub.id))
        assert e is not None and e.next_due_at is not None
        return e.next_due_at


def test_the_welcome_goes_at_once_and_the_next_step_waits_for_an_allowed_day(
    db: str, clock: FrozenClock, tmp_path: Path, outbox: list
) -> None:
    # Christmas Day, 10:00 in New York (15:00 UTC), a quiet day of the sequence.
    clock.set(datetime(2026, 12, 25, 15, 0, tzinfo=UTC))
    assert run("sequences", "apply", str(_folder(tmp_path, '["12-25"]'))).code == 0
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, "quick"), confirmed=True)
    assert drain() == 1  # the reader just confirmed and is waiting for it
    assert [m["Subject"] for m in outbox] == ["Step one"]
    assert _next_due("ann@example.com").astimezone(NY) == datetime(2026, 12, 26, 9, 0, tzinfo=NY)
    clock.advance(timedelta(minutes=5))
    assert drain() == 0


def test_dry_run_and_schedule_show_the_effect(db: str, clock: FrozenClock, tmp_path: Path) -> None:
    # Friday 2026-03-06, 09:00 in New York: step two is due in a minute, on the 6th.
    folder = sequence_copy(tmp_path)
    assert run("sequences", "apply", str(folder)).code == 0
    with transaction() as s:
        for who in ("ann", "bob"):
            add_subscriber(s, f"{who}@example.com", get_sequence(s, "quick"), confirmed=True)
    assert drain() == 2
    before = _next_due("ann@example.com")
    quiet = _folder(tmp_path / "edit", '["03-06", "03-07"]')
    ran = run("sequences", "apply", "--dry-run", str(quiet))
    assert ran.code == 0, ran.err
    assert "2 unclaimed sends moved off quiet days" in ran.out
    assert _next_due("ann@example.com") == before
    assert (
        run("sequences", "apply", "--dry-run", "--json", str(quiet)).json()[0]["quiet_moved"] == 2
    )
    ran = run("sequences", "apply", str(quiet))
    assert "2 unclaimed sends moved off quiet days" in ran.out
    assert _next_due("ann@example.com").astimezone(NY) == datetime(2026, 3, 8, 9, 0, tzinfo=NY)
    rows = run("schedule", "--within", "3d", "--json").json()
    assert [(r["slot"], r["step"], r["count"], r["held"]["quiet_day"]) for r in rows] == [
        ("day", "two", 2, 2)
    ]
    assert "2 quiet day" in run("schedule", "--within", "3d", terminal=True).out
    assert "quiet days 03-06, 03-07" in run("sequences", "show", "quick", terminal=True).out
    # Taking the quiet days out brings nothing forward (and moves nothing).
    assert "moved off quiet days" not in run("sequences", "apply", str(folder)).out
