"""The one clock. Every "now" in nurture comes from here, so tests and the demo can move time.

Three kinds:
- SystemClock: real UTC time.
- FrozenClock: stands still until a test moves it (in-process tests).
- ScaledClock: starts at a chosen simulated instant and runs SPEED times faster than real
  time. It is described by a string (NURTURE_CLOCK="2026-03-06T13:00:00Z@1767000000.0x60")
  so that a web process, a worker and beat started separately all read the same time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from nurture.context import current
from nurture.interfaces import Clock

__all__ = [
    "Clock",
    "FrozenClock",
    "ScaledClock",
    "SystemClock",
    "clock_for",
    "now",
    "practice_zone",
]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    def __init__(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


class ScaledClock:
    def __init__(self, sim_start: datetime, real_start: float, speed: float) -> None:
        self.sim_start = sim_start.astimezone(UTC)
        self.real_start = real_start
        self.speed = speed

    def now(self) -> datetime:
        return self.sim_start + timedelta(seconds=(time.time() - self.real_start) * self.speed)

    def real_seconds(self, sim: timedelta) -> float:
        return sim.total_seconds() / self.speed

    def spec(self) -> str:
        return f"{self.sim_start.isoformat()}@{self.real_start}x{self.speed}"

    @classmethod
    def parse(cls, spec: str) -> ScaledClock:
        try:
            sim, rest = spec.split("@", 1)
            real, speed = rest.split("x", 1)
            start = datetime.fromisoformat(sim.replace("Z", "+00:00"))
            if start.tzinfo is None:
                raise ValueError
            return cls(start, float(real), float(speed))
        except ValueError:
            raise ValueError(
                "NURTURE_CLOCK must look like 2026-03-06T13:00:00+00:00@<unix time>x<speed>"
            ) from None


def clock_for(spec: str | None) -> Clock:
    """The clock NURTURE_CLOCK describes: scaled simulated time, or else the real one."""
    return ScaledClock.parse(spec) if spec else SystemClock()


def now() -> datetime:
    """Now, by the clock of the current runtime (see nurture.context)."""
    return current().clock.now()


def practice_zone() -> tzinfo:
    """The practice's zone (NURTURE_TIMEZONE), in which people are shown times; unset, the
    machine's local zone, so a practice that never set it still sees its own clock."""
    name = current().settings.timezone
    if name:
        return ZoneInfo(name)
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC
