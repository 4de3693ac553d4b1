"""The retention limit: `nurture subscribers purge` on a simulated clock (NURTURE_CLOCK),
erasing exactly those whose sequences all ended long enough ago, as `forget` erases, on
SQLite and PostgreSQL; stats keep their counts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.db import transaction
from nurture.events.models import Event
from nurture.sequences.services import get_sequence
from nurture.subscribers.models import Consent, Enrollment, Subscriber
from nurture.subscribers.suppression import is_suppressed
from tests.cli_helpers import drain, run, sequence_copy
from tests.conftest import reload_runtime

START = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)  # 09:00 in New York: the quick window


@pytest.fixture
def sim(db: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """Moves NURTURE_CLOCK: each call starts the simulated clock at the given instant."""

    def at(instant: datetime) -> None:
        monkeypatch.setenv("NURTURE_CLOCK", f"{instant.isoformat()}@{time.time()}x1")
        monkeypatch.setenv("NURTURE_RETENTION_DAYS", "30")
        # This test is about finished readers: gil's unconfirmed add stays (pending limit:
        # tests/test_leave_nothing.py).
        monkeypatch.setenv("NURTURE_PENDING_DAYS", "3650")
        reload_runtime()

    at(START)
    return at


def _add(email: str, slug: str = "quick") -> None:
    assert run("subscribers", "add", email, "--sequence", slug, "--confirmed").code == 0


def _people() -> set[str]:
    with transaction() as s:
        return {sub.email for sub in s.scalars(select(Subscriber))}


def _play_all_steps(sim: object, start: datetime) -> None:
    for minute in range(6):
        sim(start + timedelta(minutes=minute))  # type: ignore[operator]
        drain()


def test_purge_erases_only_who_should_go(sim: object, tmp_path: Path) -> None:
    at = sim
    assert run("sequences", "apply", str(sequence_copy(tmp_path))).code == 0
    other = sequence_copy(tmp_path / "b")
    (other / "sequence.yaml").write_text(
        (other / "sequence.yaml").read_text().replace("slug: quick", "slug: other")
    )
    assert run("sequences", "apply", str(other)).code == 0
    for who in ("ann", "bob", "cy", "dee", "eve", "fay"):
        _add(f"{who}@example.com")
    _add("eve@example.com", "other")  # eve stays in a second sequence
    assert run("subscribers", "add", "gil@example.com", "--sequence", "quick").code == 0  # pending
    drain()  # everyone's first step
    assert run("subscribers", "unsubscribe", "bob@example.com").code == 0
    assert run("subscribers", "booked", "cy@example.com").code == 0
    with transaction() as s:
        from nurture.subscribers.addresses import get_subscriber
        from nurture.subscribers.leaving import mark_bounced

        mark_bounced(s, get_subscriber(s, "fay@example.com"), "550 mailbox unavailable")
        # eve's second sequence waits (paused); dee's only one too: neither has ended.
        s.execute(
            Enrollment.__table__.update()
            .where(Enrollment.sequence_id == get_sequence(s, "other").id)
            .values(status="paused")
        )
    assert run("sequences", "pause", "quick").code == 0
    assert run("sequences", "resume", "quick").code == 0
    _play_all_steps(at, START + timedelta(minutes=1))  # ann, dee, eve complete quick
    with transaction() as s:
        from nurture.subscribers.addresses import get_subscriber
        from nurture.subscribers.unsubscribe import unsubscribe

        # dee is kept in flight: her enrollment goes back to active with nothing sent yet.
        dee = get_subscriber(s, "dee@example.com")
        dee.enrollments[0].status = "paused"
    assert run("stats", "quick", "--json").json()[0]["steps"][0]["sent"] == 6

    # Day 20: hal signs up and leaves at once; ended 20 days after the others.
    at(START + timedelta(days=20))
    _add("hal@example.com")
    drain()
    with transaction() as s:
        unsubscribe(s, get_subscriber(s, "hal@example.com"))

    # Day 29: nobody has been finished for 30 days yet.
    at(START + timedelta(days=29))
    ran = run("subscribers", "purge")
    assert ran.code == 0 and ran.out.startswith("0 people erased"), ran.out

    # Day 31: ann (completed), bob (unsubscribed), cy (booked), fay (bounced) go.
    at(START + timedelta(days=31))
    everyone = _people()
    stats_before = run("stats", "--json").json()
    dry = run("subscribers", "purge", "--dry-run")
    assert dry.code == 0 and dry.out.startswith("4 people would be erased"), dry.out
    assert "@" not in dry.out
    assert _people() == everyone
    ran = run("subscribers", "purge")
    assert ran.code == 0 and ran.out.startswith("4 people erased"), ran.out
    assert "@" not in ran.out + ran.err
    gone = {"ann", "bob", "cy", "fay"}
    assert _people() == {f"{w}@example.com" for w in ("dee", "eve", "gil", "hal")}
    with transaction() as s:
        for who in gone:
            assert is_suppressed(s, f"{who}@example.com")
        assert s.scalar(select(func.count()).select_from(Consent)) == 5  # dee, eve x2, gil, hal
        assert s.scalar(select(func.count()).where(Event.kind == "forgotten")) == 4
    # Exactly as forget: only the person can come back, through the form.
    again = run("subscribers", "add", "ann@example.com", "--sequence", "quick", "--confirmed")
    assert again.code == 1
    assert run("stats", "--json").json() == stats_before

    # Day 51: hal's 30 days are up too.
    at(START + timedelta(days=51))
    assert run("subscribers", "purge", "--json").json()["erased"] == 1
    assert _people() == {"dee@example.com", "eve@example.com", "gil@example.com"}


def test_without_the_setting_purge_keeps_finished_readers(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the pending limit applies (unconfirmed signups, NURTURE_PENDING_DAYS).
    ran = run("subscribers", "purge")
    assert ran.code == 0
    assert "NURTURE_RETENTION_DAYS is not set: finished readers are kept" in ran.out
    monkeypatch.setenv("NURTURE_RETENTION_DAYS", "0")
    from nurture.config import load_settings
    from nurture.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^NURTURE_RETENTION_DAYS: "):
        load_settings()


def test_forget_keeps_the_stats(quick_sequence: str, clock: object) -> None:
    _add("ann@example.com")
    _add("bob@example.com")
    drain()
    before = run("stats", "--json").json()
    assert before[0]["steps"][0]["sent"] == 2
    assert run("subscribers", "forget", "ann@example.com", "--yes").code == 0
    assert run("stats", "--json").json() == before
