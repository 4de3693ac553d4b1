"""How fast, and how much a day, we hand mail to the relay: one token bucket shared by every
worker process (NURTURE_SEND_RATE, NURTURE_SEND_DAILY_LIMIT), and the relay's own "slow
down" replies folded into it.

The bucket lives where all workers can reach it atomically: in Redis (one Lua script per
message) when the broker is Redis, otherwise in the database (one locked row). Its state is
small and disposable: after a Redis restart the bucket starts full again and the day's count
is read back from the deliveries sent today, so a lost bucket never lets a day exceed its
limit by more than the messages in flight.

Backing off works as TCP's congestion control does (AIMD): a throttling reply halves the
pace of the whole pipeline at once (multiplicative decrease, at most once a second however
many workers saw it), then the pace grows back by a tenth of that floor each second
(additive increase) and the cap is dropped after RECOVER_SECONDS without another refusal.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.config import Settings
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus, SendLimitState

log = logging.getLogger(__name__)

MIN_RATE = 0.5  # messages/s: the slowest a throttled pipeline goes
RECOVER_SECONDS = 60.0
GROWTH = 0.1  # of the floor, per second
POLL_SECONDS = 0.5  # unlimited and unthrottled: how often a worker looks for a new cap


class DailyLimitReached(Exception):
    """NURTURE_SEND_DAILY_LIMIT is used up: nothing more goes out before `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"daily send limit reached; sending resumes at {until:%Y-%m-%d %H:%MZ}")
        self.until = until


class SendLimiter(Protocol):
    def acquire(self) -> None:
        """Wait for this message's turn; raise DailyLimitReached when the day is used up."""

    def throttle(self) -> None:
        """The relay asked us to slow down: halve the pace of every worker."""


def next_utc_day(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC) + timedelta(days=1)


def sent_today(s: Session, at: datetime) -> int:
    """The day's count as the database knows it: where a lost counter starts again."""
    start = next_utc_day(at) - timedelta(days=1)
    sent = (Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= start)
    return s.scalar(select(func.count()).where(*sent)) or 0


def capped_rate(configured: float, floor: float, since: float, t: float) -> float:
    """The pace now: the configured rate (math.inf: none) under the AIMD cap, if any."""
    if floor > 0 and 0 <= t - since < RECOVER_SECONDS:
        return min(configured, floor * (1 + GROWTH * (t - since)))
    return configured


class _Pace:
    """This process's own recent send rate: what a first throttle halves when no rate is
    configured (the shared bucket does not count messages until it has to)."""

    def __init__(self) -> None:
        self.stamps: deque[float] = deque(maxlen=512)

    def tick(self) -> None:
        self.stamps.append(time.monotonic())

    def rate(self) -> float:
        t = time.monotonic()
        recent = [x for x in self.stamps if t - x <= 2.0]
        return max(len(recent) / 2.0, MIN_RATE * 2)


class _Base:
    def __init__(self, settings: Settings) -> None:
        self.rate = settings.send_rate or math.inf
        self.daily = settings.send_daily_limit or 0
        self.pace = _Pace()
        self._checked = 0.0
        self._capped = False

    def _unbounded(self) -> bool:
        """Nothing configured and nobody throttled lately: skip the shared bucket (checked
        every POLL_SECONDS, so a throttle seen by another worker reaches us quickly)."""
        if self.rate != math.inf or self.daily:
            return False
        t = time.monotonic()
        if t - self._checked >= POLL_SECONDS:
            try:
                self._capped = self._is_capped()
            except Exception:
                # Only advice about another worker's throttle: with no limit configured, a
                # Redis that is down (restarting) must not stop the mail.
                log.warning("send limiter unreachable; going on unthrottled")
                self._capped = False
            self._checked = t
        return not self._capped

    def acquire(self) -> None:
        self.pace.tick()
        if self._unbounded():
            return
        while True:
            wait = self._take(now())
            if wait <= 0:
                return
            time.sleep(min(wait, 1.0))

    def throttle(self) -> None:
        try:
            self._cut(self.pace.rate())
        except Exception:  # advisory: the refused message is handled anyway
            log.warning("send limiter unreachable; cannot slow the other workers down")
        self._capped, self._checked = True, time.monotonic()

    def _is_capped(self) -> bool:
        raise NotImplementedError

    def _take(self, at: datetime) -> float:
        """Take a token: 0 when granted, else seconds to wait. Raises DailyLimitReached."""
        raise NotImplementedError

    def _cut(self, observed: float) -> None:
        raise NotImplementedError


# --- Redis -----------------------------------------------------------------------------

# KEYS: bucket hash, today's counter. ARGV: rate (0: none), daily limit (0: none), the count
# of today's sends from the database (-1: not read yet), MIN_RATE, RECOVER_SECONDS, GROWTH.
# Returns {status, wait}: 1 granted, 0 wait `wait` seconds, -1 day used up, -2 read the count.
_TAKE = """
local t = redis.call('TIME'); t = tonumber(t[1]) + tonumber(t[2]) / 1e6
local limit = tonumber(ARGV[2])
if limit > 0 then
  local used = redis.call('GET', KEYS[2])
  if not used then
    if tonumber(ARGV[3]) < 0 then return {-2, '0'} end
    used = ARGV[3]
    redis.call('SET', KEYS[2], used, 'EX', 172800)
  end
  if tonumber(used) >= limit then return {-1, '0'} end
end
local rate = tonumber(ARGV[1])
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if floor > 0 and t - since >= 0 and t - since < tonumber(ARGV[5]) then
  local cap = floor * (1 + tonumber(ARGV[6]) * (t - since))
  if rate <= 0 or cap < rate then rate = cap end
end
if rate > 0 then
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '1')
  local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp') or tostring(t))
  tokens = math.min(1, tokens + math.max(0, t - stamp) * rate)
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(t))
    return {0, tostring((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'stamp', tostring(t))
end
if limit > 0 then redis.call('INCR', KEYS[2]) end
return {1, '0'}
"""

# KEYS: bucket hash. ARGV: the reporting worker's observed rate, configured rate (0: none),
# MIN_RATE, RECOVER_SECONDS, GROWTH. One cut a second: five workers seeing the same burst of
# refusals halve the pace once, not five times.
_CUT = """
local t = redis.call('TIME'); t = tonumber(t[1]) + tonumber(t[2]) / 1e6
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if floor > 0 and t - since >= 0 and t - since < 1 then return 0 end
local current = tonumber(ARGV[1])
if floor > 0 and t - since >= 0 and t - since < tonumber(ARGV[4]) then
  current = floor * (1 + tonumber(ARGV[5]) * (t - since))
end
local rate = tonumber(ARGV[2])
if rate > 0 and rate < current then current = rate end
redis.call('HSET', KEYS[1], 'floor', tostring(math.max(tonumber(ARGV[3]), current / 2)),
           'since', tostring(t))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class RedisLimiter(_Base):
    def __init__(self, settings: Settings) -> None:
        import redis

        super().__init__(settings)
        self.client = redis.Redis.from_url(settings.broker_url)
        self.key = f"nurture:{settings.queue}:send-limit"
        self._take_script = self.client.register_script(_TAKE)
        self._cut_script = self.client.register_script(_CUT)

    def _is_capped(self) -> bool:
        since = self.client.hget(self.key, "since")
        return since is not None and time.time() - float(since) < RECOVER_SECONDS

    def _take(self, at: datetime) -> float:
        day_key = f"{self.key}:{at:%Y-%m-%d}"
        rate = 0 if self.rate == math.inf else self.rate
        args = [rate, self.daily, -1, MIN_RATE, RECOVER_SECONDS, GROWTH]
        status, wait = self._take_script(keys=[self.key, day_key], args=args)
        if int(status) == -2:  # the day's counter is gone (new day, Redis restarted)
            with transaction() as s:
                args[2] = sent_today(s, at)
            status, wait = self._take_script(keys=[self.key, day_key], args=args)
        if int(status) == -1:
            raise DailyLimitReached(next_utc_day(at))
        return 0.0 if int(status) == 1 else float(wait)

    def _cut(self, observed: float) -> None:
        rate = 0 if self.rate == math.inf else self.rate
        self._cut_script(keys=[self.key], args=[observed, rate, MIN_RATE, RECOVER_SECONDS, GROWTH])


# --- the database (embedded default) ---------------------------------------------------


class DatabaseLimiter(_Base):
    NAME = "send"

    def _row(self, s: Session) -> SendLimitState:
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(insert(SendLimitState).values(name=self.NAME).on_conflict_do_nothing())
        q = select(SendLimitState).where(SendLimitState.name == self.NAME).with_for_update()
        return s.scalars(q).one()

    def _is_capped(self) -> bool:
        with transaction() as s:
            since = s.scalar(select(SendLimitState.since).where(SendLimitState.name == self.NAME))
        return since is not None and time.time() - since < RECOVER_SECONDS

    def _take(self, at: datetime) -> float:
        day = f"{at:%Y-%m-%d}"
        with transaction() as s:
            row = self._row(s)
            if self.daily:
                if row.day != day:
                    row.day, row.day_count = day, sent_today(s, at)
                if row.day_count >= self.daily:
                    raise DailyLimitReached(next_utc_day(at))
            t = time.time()
            rate = capped_rate(self.rate, row.floor, row.since, t)
            if rate != math.inf:
                tokens = min(1.0, row.tokens + max(0.0, t - (row.stamp or t)) * rate)
                row.stamp = t
                if tokens < 1:
                    row.tokens = tokens
                    return (1 - tokens) / rate
                row.tokens = tokens - 1
            if self.daily:
                row.day_count += 1
        return 0.0

    def _cut(self, observed: float) -> None:
        with transaction() as s:
            row = self._row(s)
            t = time.time()
            if row.floor > 0 and 0 <= t - row.since < 1:
                return
            current = capped_rate(min(self.rate, observed), row.floor, row.since, t)
            row.floor, row.since = max(MIN_RATE, current / 2), t


def get_limiter(settings: Settings | None = None) -> SendLimiter:
    """The current runtime's limiter (its poll state is worth keeping), or a new one for
    other settings."""
    if settings is not None:
        return _limiter(settings)
    runtime = current()
    return runtime.kept("send limiter", lambda: _limiter(runtime.settings))


def _limiter(settings: Settings) -> SendLimiter:
    redis_broker = settings.broker_url.startswith(("redis://", "rediss://"))
    return RedisLimiter(settings) if redis_broker else DatabaseLimiter(settings)
