"""The engine with real parts: Celery workers on Redis, SMTP to a real local server,
SQLite and PostgreSQL. Time runs on a shared sped-up clock so windows and delays are real."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from nurture.clock import FrozenClock, ScaledClock, SystemClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.editing import apply_spec
from nurture.sequences.spec import load_folder
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, EnrollmentStatus
from tests.conftest import FIXTURES
from tests.support import SMTPServer, Worker, new_queue, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.slow]

ZONES = ["America/New_York", "America/Chicago", "America/Denver"]
STEPS = ["Step one", "Step two", "Step three", "Step four"]


def _apply_windowed() -> None:
    spec = load_folder(FIXTURES / "sequences" / "quick")
    window = spec.send_window.model_copy(update={"first_step_immediately": False})
    with transaction() as s:
        apply_spec(s, spec.model_copy(update={"send_window": window}))


def _worker_env(db: str, broker: str, smtp: SMTPServer, **extra: str) -> dict[str, str]:
    return {
        "NURTURE_DATABASE_URL": db,
        "NURTURE_BROKER_URL": broker,
        "NURTURE_MAIL_URL": smtp.url,
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_BASE_URL": "https://nurture.test",
        # A queue of its own: other test runs may share this Redis.
        "NURTURE_QUEUE": new_queue(),
        **extra,
    }


def test_300_subscribers_three_zones_every_step_once_in_window(
    db: str, broker: str, tmp_path: Path
) -> None:
    # Friday 13:30 UTC: the 09:00-11:00 window opens 30, 90 and 150 minutes from now in
    # New York, Chicago and Denver. The readers are added on a clock that stands still, and
    # simulated time starts only when the worker does: on a busy machine, setting up must not
    # eat into a window. One real second is five simulated minutes, so a window lasts 24 s.
    start = datetime(2026, 3, 6, 13, 30, tzinfo=UTC)
    current().clock = FrozenClock(start)
    _apply_windowed()
    with transaction() as s:
        from nurture.sequences.services import get_sequence

        seq = get_sequence(s, "quick")
        for i in range(300):
            add_subscriber(s, f"reader{i}@example.com", seq, timezone=ZONES[i % 3], confirmed=True)
    zone_of = {f"reader{i}@example.com": ZONES[i % 3] for i in range(300)}

    with SMTPServer() as smtp:
        shared = ScaledClock(start, time.time(), 300.0)
        current().clock = shared
        env = _worker_env(
            db,
            broker,
            smtp,
            NURTURE_CLOCK=shared.spec(),
            NURTURE_DISPATCH_INTERVAL="0.2",
            NURTURE_BATCH_SIZE="50",
        )
        worker = Worker(env, concurrency=2, log=tmp_path / "worker.log")
        try:
            done = wait_until(lambda: len(smtp.messages) >= 1200, timeout=120)
            time.sleep(1.0)  # anything extra would arrive now
        finally:
            worker.stop()
        assert done, f"only {len(smtp.messages)} of 1200 arrived\n{worker.tail()}"
        messages = smtp.messages

    assert len(messages) == 1200
    received: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for msg in messages:
        received[str(msg["To"])].append((parsedate_to_datetime(msg["Date"]), str(msg["Subject"])))
    assert len(received) == 300
    for address, got in received.items():
        got.sort()
        assert [subject for _, subject in got] == STEPS, address
        tz = ZoneInfo(zone_of[address])
        for sent_at, _ in got:
            local = sent_at.astimezone(tz)
            assert 9 <= local.hour < 11, (address, local)
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
        # Date has whole seconds; a one-minute delay can look one second short.
        assert all(gap >= timedelta(seconds=59) for gap in gaps), (address, gaps)

    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1200
        statuses = s.scalars(select(Enrollment.status)).all()
        assert set(statuses) == {EnrollmentStatus.COMPLETED}


def test_sigkill_mid_batch_loses_no_step(db: str, broker: str, tmp_path: Path) -> None:
    from nurture.sequences.services import get_sequence

    current().clock = SystemClock()
    with transaction() as s:
        from nurture.sequences.editing import apply_spec as apply

        apply(s, load_folder(FIXTURES / "sequences" / "quick"))
        seq = get_sequence(s, "quick")
        for i in range(120):
            add_subscriber(s, f"k{i}@example.com", seq, timezone="UTC", confirmed=True)
        # Only the first step matters here; keep later ones far away.
        for st in seq.steps[1:]:
            st.delay_seconds = 30 * 86400

    # A slow server keeps the first worker mid-batch when it dies.
    with SMTPServer(delay=0.05) as smtp:
        env = _worker_env(
            db,
            broker,
            smtp,
            NURTURE_DISPATCH_INTERVAL="0.5",
            NURTURE_BATCH_SIZE="40",
            NURTURE_LEASE_SECONDS="5",
        )
        first = Worker(env, concurrency=1, log=tmp_path / "first.log")
        try:
            assert wait_until(lambda: len(smtp.messages) >= 10, timeout=60), first.tail()
        finally:
            first.kill()
        killed_at = len(smtp.messages)
        assert killed_at < 120, "the worker finished before it could be killed"
        second = Worker(env, concurrency=2, log=tmp_path / "second.log")
        try:
            ok = wait_until(lambda: len({m["To"] for m in smtp.messages}) >= 120, timeout=90)
            time.sleep(1.0)
        finally:
            second.stop()
        assert ok, f"{len(smtp.messages)} arrived\n{second.tail()}"
        per_address: dict[str, int] = defaultdict(int)
        for m in smtp.messages:
            per_address[str(m["To"])] += 1

    assert len(per_address) == 120  # nobody lost their step
    # At most the message in flight at the kill (one per pool process) is sent twice.
    assert sum(per_address.values()) - 120 <= 1
    with transaction() as s:
        sent = s.scalars(select(Delivery.status)).all()
        assert sent.count(DeliveryStatus.SENT) == 120
        assert len(sent) == 120
