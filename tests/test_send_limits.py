"""NURTURE_SEND_RATE and NURTURE_SEND_DAILY_LIMIT: the shared bucket in the database (the
embedded default) and in Redis, the daily limit's wait until the next UTC day as `nurture
schedule` shows it, and the relay's "slow down" turning into a slower pipeline."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.config import load_settings
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.limits import (
    RECOVER_SECONDS,
    DailyLimitReached,
    RedisLimiter,
    capped_rate,
    get_limiter,
)
from nurture.delivery.sending import send_batch
from nurture.mail.backends import MemoryBackend, TransientMailError, _by_code
from nurture.reports import Slot, schedule
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment
from tests.cli_helpers import run
from tests.conftest import REDIS_URL, missing_service, reload_runtime


def _add(n: int) -> None:
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for i in range(n):
            add_subscriber(s, f"d{i}@example.com", seq, timezone="UTC", confirmed=True)


def _configure(monkeypatch: pytest.MonkeyPatch, clock: FrozenClock, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"NURTURE_{name.upper()}", value)
    reload_runtime()


def _send_due() -> list[int]:
    ids: list[int] = []
    dispatch_once(ids.extend)
    return send_batch(ids, MemoryBackend()).sent


def test_daily_limit_waits_for_the_next_utc_day_and_schedule_shows_it(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.set(datetime(2026, 3, 6, 9, 30, tzinfo=UTC))
    _configure(monkeypatch, clock, send_daily_limit="3")
    _add(5)
    assert len(_send_due()) == 3
    midnight = datetime(2026, 3, 7, tzinfo=UTC)
    with transaction() as s:
        waiting = s.scalars(select(Enrollment.next_due_at).where(Enrollment.last_step_id.is_(None)))
        assert list(waiting) == [midnight, midnight]
        rows = schedule(s, timedelta(days=2))
    # The two put back, and the three who got step one: their step two (due in a minute)
    # no longer fits today either.
    waits = {
        (r.step, r.count)
        for r in rows.rows
        if r.start == midnight and r.held.daily_limit == r.count and r.slot is Slot.HOUR
    }
    assert waits == {("one", 2), ("two", 3)}
    shown = run("schedule", "--within", "2d", terminal=True)
    assert shown.code == 0 and "3 daily limit" in shown.out
    assert _send_due() == []  # nothing more today
    clock.set(datetime(2026, 3, 7, 9, 30, tzinfo=UTC))
    assert len(_send_due()) == 3  # a new day's three, of the five now due


def test_schedule_shows_todays_due_work_beyond_the_limit_as_waiting(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.set(datetime(2026, 3, 6, 9, 30, tzinfo=UTC))
    _configure(monkeypatch, clock, send_daily_limit="4")
    _add(10)
    with transaction() as s:
        planned = schedule(s, timedelta(days=1))
        rows = {(r.slot, r.start, r.held.daily_limit): r.count for r in planned.rows}
    assert rows == {(Slot.NOW, None, 0): 4, (Slot.HOUR, datetime(2026, 3, 7, tzinfo=UTC), 6): 6}


def test_send_rate_in_the_database_bucket(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, clock, send_rate="20")
    limiter = get_limiter()
    start = time.monotonic()
    for _ in range(21):
        limiter.acquire()
    assert time.monotonic() - start >= 0.9  # 20 waits of 1/20 s after the first token


@pytest.fixture
def redis_settings(quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> str:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL} ({type(exc).__name__})")
    _configure(monkeypatch, clock, queue=f"nurture-test-{uuid.uuid4().hex[:12]}")
    return REDIS_URL


def _redis_limiter(**overrides: object) -> RedisLimiter:
    settings = current().settings.model_copy(update={"broker_url": REDIS_URL, **overrides})
    return RedisLimiter(settings)


def test_redis_bucket_rate_and_daily_limit_and_a_lost_counter(
    redis_settings: str, clock: FrozenClock
) -> None:
    limiter = _redis_limiter(send_rate=20.0, send_daily_limit=25)
    start = time.monotonic()
    for _ in range(21):
        limiter.acquire()
    assert time.monotonic() - start >= 0.9
    for _ in range(4):
        limiter.acquire()
    with pytest.raises(DailyLimitReached) as reached:
        limiter.acquire()
    assert reached.value.until == datetime(2026, 3, 7, tzinfo=UTC)
    # Redis restarted and lost the counter: it is read back from the deliveries sent today
    # (none in this test), never silently left at zero for a day already under way.
    limiter.client.delete(f"{limiter.key}:2026-03-06")
    limiter.acquire()
    assert limiter.client.get(f"{limiter.key}:2026-03-06") == b"1"


def test_a_throttling_reply_slows_every_worker_then_recovers(redis_settings: str) -> None:
    one, other = _redis_limiter(), _redis_limiter()  # two worker processes, no rate set
    for _ in range(40):
        one.acquire()  # ~40 messages in the last two seconds: 20/s observed
    one.throttle()
    start = time.monotonic()
    for _ in range(11):
        other.acquire()  # the other worker now waits its turn too: ~10/s
    assert time.monotonic() - start >= 0.7
    # Additive increase, and no cap at all once RECOVER_SECONDS pass without a refusal.
    assert capped_rate(math.inf, 10.0, 0.0, 5.0) == pytest.approx(15.0)
    assert capped_rate(14.0, 10.0, 0.0, 5.0) == 14.0
    assert capped_rate(math.inf, 10.0, 0.0, RECOVER_SECONDS + 1) == math.inf


def test_throttling_wording_tells_the_server_from_the_message() -> None:
    ses = _by_code(454, b"Throttling failure: Maximum sending rate exceeded.", "x")
    gmail = _by_code(421, b"4.7.28 Our system has detected an unusual rate", "x")
    ses_bare = _by_code(454, b"4.7.0 Try again later", "x")
    closing = _by_code(421, b"4.3.2 service not available, closing transmission channel", "x")
    greylist = _by_code(451, b"4.7.1 greylisted, try again later", "x")
    busy_mailbox = _by_code(450, b"4.2.1 mailbox busy, too many messages", "x")
    for error in (ses, gmail, ses_bare):
        assert isinstance(error, TransientMailError) and error.throttle
    for error in (greylist, busy_mailbox, closing):
        assert isinstance(error, TransientMailError) and not error.throttle


def test_settings_refuse_a_nonsense_rate() -> None:
    from nurture.errors import ConfigError

    with pytest.raises(ConfigError, match="NURTURE_SEND_RATE"):
        load_settings(send_rate=0)
    with pytest.raises(ConfigError, match="NURTURE_SEND_DAILY_LIMIT"):
        load_settings(send_daily_limit=-1)
