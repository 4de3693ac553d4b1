"""Send windows and delays, including across DST changes, as properties (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.sequences.schedule import SendWindow, due_at, format_delay, parse_delay

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/Dublin",
    "UTC",
]

instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
times = st.times().map(lambda t: t.replace(microsecond=0))
day_sets = st.frozensets(st.integers(0, 6), min_size=1)


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    start = draw(times)
    end = draw(times.filter(lambda t: t != start))
    return SendWindow(start=start, end=end, days=draw(day_sets))


@settings(max_examples=400, deadline=None)
@given(
    after=instants,
    delay=st.integers(0, 30 * 86400),
    window=windows(),
    tz=st.sampled_from(ZONES),
)
def test_due_time_is_inside_window_and_never_early(
    after: datetime, delay: int, window: SendWindow, tz: str
) -> None:
    zone = ZoneInfo(tz)
    due = due_at(after, timedelta(seconds=delay), window, zone)
    assert due >= after + timedelta(seconds=delay)
    assert window.contains(due, zone)
    # Never later than needed: no earlier instant (probed every 15 minutes) was open.
    probe = after + timedelta(seconds=delay)
    while probe + timedelta(minutes=15) < due:
        probe += timedelta(minutes=15)
        if window.contains(probe, zone):
            # The window may open at a non-15-minute boundary; allow up to 15 minutes.
            assert due - probe <= timedelta(minutes=15)
            break


@settings(max_examples=200, deadline=None)
@given(after=instants, tz=st.sampled_from(ZONES), days=day_sets)
def test_never_on_a_forbidden_weekday(after: datetime, tz: str, days: frozenset[int]) -> None:
    zone = ZoneInfo(tz)
    window = SendWindow(time(9), time(11), days)
    due = due_at(after, timedelta(days=1), window, zone)
    local = due.astimezone(zone)
    assert local.weekday() in days
    assert time(9) <= local.time() < time(11)


def test_spring_forward_keeps_local_morning() -> None:
    # 2026-03-08: New York jumps from 02:00 to 03:00. A 9:00 window stays 9:00 local.
    ny = ZoneInfo("America/New_York")
    window = SendWindow(time(9), time(11))
    sent = datetime(2026, 3, 7, 9, 30, tzinfo=ny)
    due = due_at(sent, timedelta(days=1), window, ny)
    assert due.astimezone(ny) == datetime(2026, 3, 8, 10, 30, tzinfo=ny)  # 23 real hours + 1
    assert due - sent.astimezone(UTC) >= timedelta(days=1)


def test_window_start_inside_the_skipped_hour() -> None:
    ny = ZoneInfo("America/New_York")
    window = SendWindow(time(2, 30), time(4))
    due = window.next_open(datetime(2026, 3, 8, 5, 0, tzinfo=UTC), ny)  # 00:00 EST
    assert due.astimezone(ny).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 0)


def test_fall_back_repeated_hour() -> None:
    ny = ZoneInfo("America/New_York")
    window = SendWindow(time(1, 30), time(2))
    due = window.next_open(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), ny)  # 00:00 EDT
    assert due == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30 (EDT)


def test_window_across_midnight() -> None:
    window = SendWindow(time(22), time(2), frozenset({4}))  # Friday night
    utc = ZoneInfo("UTC")
    assert window.contains(datetime(2026, 3, 7, 1, 0, tzinfo=UTC), utc)  # Saturday 01:00
    assert not window.contains(datetime(2026, 3, 8, 1, 0, tzinfo=UTC), utc)


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0), ("30m", 1800), ("2h", 7200), ("3d", 259200), ("1w", 604800)]
)
def test_delays(text: str, seconds: int) -> None:
    assert parse_delay(text) == timedelta(seconds=seconds)
    assert parse_delay(format_delay(seconds)) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["3", "-1d", "2 days", "1.5h", "", "d"])
def test_bad_delays_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="delay"):
        parse_delay(bad)


def _next_open_searched(window: SendWindow, earliest: datetime, tz: ZoneInfo) -> datetime:
    """next_open as it searched before its openings were remembered: day by day, for each
    earliest instant on its own."""
    from nurture.sequences.schedule import _SEARCH_DAYS, _midnight

    earliest = earliest.astimezone(UTC)
    if window.contains(earliest, tz):
        return earliest
    local_day = earliest.astimezone(tz).date()
    for offset in range(-1, _SEARCH_DAYS):
        day = local_day + timedelta(days=offset)
        if window.quiet.is_quiet(day):
            continue
        for candidate in (_midnight(day, tz), window._window_start(day, tz)):
            if candidate is not None and candidate >= earliest and window.contains(candidate, tz):
                return candidate
    raise ValueError("no time to send")


_ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata",
          "America/Santiago", "Pacific/Chatham"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    start=st.times(),
    end=st.times(),
    days=st.sets(st.integers(0, 6), min_size=1),
    quiet=st.lists(
        st.dates(datetime(2026, 1, 1).date(), datetime(2027, 12, 31).date()), max_size=6
    ),
    zone=st.sampled_from(_ZONES),
    # Around 2026's and 2027's clock changes and everything between.
    earliest=st.datetimes(datetime(2026, 2, 20), datetime(2027, 11, 10), timezones=st.just(UTC)),
    asks=st.lists(st.integers(0, 3 * 86400), min_size=1, max_size=8),
)
def test_remembered_openings_give_what_the_search_gave(
    start: time, end: time, days: set[int], quiet: list, zone: str, earliest: datetime,
    asks: list[int],
) -> None:  # fmt: skip
    if start == end:
        return
    from nurture.sequences.schedule import QuietDays

    window = SendWindow(start, end, frozenset(days), QuietDays(once=frozenset(quiet)))
    tz = ZoneInfo(zone)
    # Several readers of one zone asking in turn: later ones are answered from what the
    # earlier ones' search found.
    for seconds in asks:
        at = earliest + timedelta(seconds=seconds)
        assert window.next_open(at, tz) == _next_open_searched(window, at, tz)
