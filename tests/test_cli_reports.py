"""`nurture schedule`, `nurture stats`, `nurture deliveries list|retry`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import reading, transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.sending import send_batch
from nurture.events.models import Event, EventKind
from nurture.mail.backends import MemoryBackend, PermanentMailError
from nurture.reports import Held, NextSend, activity, deliverability, next_send, stats
from nurture.sequences.models import Step
from nurture.subscribers.addresses import get_subscriber
from tests.cli_helpers import drain, run
from tests.conftest import reload_runtime


class Refusing(MemoryBackend):
    def send(self, msg: object) -> None:
        raise PermanentMailError("550 no such user", bounce=True)


def add(*emails: str, confirmed: bool = True) -> None:
    for email in emails:
        args = ["subscribers", "add", email, "--sequence", "quick"]
        assert run(*args, *(["--confirmed"] if confirmed else [])).code == 0


NONE_HELD = {"window": 0, "quiet_day": 0, "daily_limit": 0, "paused": 0}


def in_new_york(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    reload_runtime()


def test_schedule_counts_per_step_and_slot_in_the_practice_zone(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_new_york(monkeypatch)  # Friday 14:00 UTC is 09:00 there
    add("ann@example.com", "bob@example.com")
    add("cy@example.com", confirmed=False)  # not confirmed: nothing scheduled
    rows = run("schedule", "--within", "1h", "--json").json()
    assert rows == [
        {
            "slot": "now",
            "start": None,
            "first": None,
            "last": None,
            "sequence": "quick",
            "step": "one",
            "count": 2,
            "held": NONE_HELD,
        }
    ]
    drain()
    rows = run("schedule", "--within", "1h", "--json").json()
    assert [(r["slot"], r["start"], r["first"], r["step"], r["count"]) for r in rows] == [
        ("hour", "2026-03-06T09:00:00-05:00", "2026-03-06T09:01:00-05:00", "two", 2)
    ]
    shown = run("schedule", "--within", "1h", terminal=True).out
    assert "Fri 6 Mar 09:00" in shown and "times in America/New_York" in shown
    assert "Z" not in shown and "14:00" not in shown
    daily = run("schedule", "--within", "3d", "--json").json()
    assert [(r["slot"], r["start"], r["step"], r["count"]) for r in daily] == [
        ("day", "2026-03-06T00:00:00-05:00", "two", 2)
    ]
    # Plain `schedule` (per day) still shows the times of the day's sends.
    assert "Fri 6 Mar 09:01" in run("schedule", terminal=True).out
    assert run("schedule", "--within", "0m", "--json").json() == []
    run("subscribers", "pause", "bob@example.com")
    held = run("schedule", "--json").json()
    assert [(r["slot"], r["count"], r["held"]["paused"]) for r in held] == [
        ("day", 1, 0),
        ("paused", 1, 1),
    ]
    run("sequences", "pause", "quick")
    held = run("schedule", "--json").json()
    assert [(r["slot"], r["count"], r["held"]["paused"]) for r in held] == [("paused", 2, 2)]
    text = run("schedule", terminal=True)
    assert text.code == 0 and "paused" in text.out
    piped = run("schedule").out.splitlines()
    assert piped[0].split("\t") == [
        "slot", "start", "first", "last", "sequence", "step", "count",
        "window", "quiet_day", "daily_limit", "paused",
    ]  # fmt: skip
    bad = run("schedule", "--within", "soon")
    assert bad.code == 2 and "--within" in bad.err


def test_schedule_says_what_waits_for_the_readers_window(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_new_york(monkeypatch)
    # 23:00 in Tokyo: the welcome goes at once, step two waits for 09:00 there (00:00 UTC).
    args = ["subscribers", "add", "dee@example.com", "--sequence", "quick"]
    assert run(*args, "--timezone", "Asia/Tokyo", "--confirmed").code == 0
    add("ann@example.com")
    assert drain() == 2
    rows = run("schedule", "--within", "2d", "--json").json()
    assert [(r["start"], r["count"], r["held"]["window"]) for r in rows] == [
        ("2026-03-06T09:00:00-05:00", 1, 0),
        ("2026-03-06T19:00:00-05:00", 1, 1),
    ]
    assert "1 window" in run("schedule", "--within", "2d", terminal=True).out


def test_stats_funnel_attributes_leaving_to_the_last_step_sent(
    quick_sequence: str, clock: FrozenClock
) -> None:
    add("ann@example.com", "bob@example.com", "cy@example.com")
    drain()  # step one to all three
    run("subscribers", "unsubscribe", "cy@example.com")  # after step one
    clock.advance(timedelta(minutes=1))
    drain()  # step two to ann and bob
    with transaction() as s:
        two = s.scalar(select(Step).where(Step.key == "two"))
        assert two is not None
        d = s.scalar(select(Delivery).where(Delivery.step_id == two.id))
        assert d is not None
        for _ in range(2):  # two clicks on one email count once
            s.add(Event(kind="clicked", step_id=two.id, delivery_id=d.id))
    run("subscribers", "booked", "bob@example.com")  # after step two
    stats = run("stats", "quick", "--json").json()
    funnel = {st["key"]: st for st in stats[0]["steps"]}
    assert (funnel["one"]["sent"], funnel["one"]["unsubscribed"], funnel["one"]["booked"]) == (
        3,
        1,
        0,
    )
    assert (funnel["two"]["sent"], funnel["two"]["clicked"], funnel["two"]["booked"]) == (2, 1, 1)
    assert funnel["three"]["sent"] == 0
    text = run("stats", terminal=True)
    assert text.code == 0 and "█" in text.out and "quick [active]" in text.out
    missing = run("stats", "nope")
    assert missing.code == 1 and "no sequence 'nope'" in missing.err


def test_deliveries_list_and_retry(quick_sequence: str, clock: FrozenClock, outbox: list) -> None:
    add("ann@example.com", "bob@example.com")
    claimed: list[int] = []
    dispatch_once(claimed.extend)
    ann_id, bob_id = sorted(claimed)
    # Bob's server refuses for good: he bounces. Ann's send gave up after transient errors.
    send_batch([bob_id], backend=Refusing())
    with transaction() as s:
        d = s.get_one(Delivery, ann_id)
        d.status, d.attempts, d.error = DeliveryStatus.FAILED, 8, "451 try again later"
    failed = run("deliveries", "list", "--status", "failed", "--json").json()
    assert sorted(r["id"] for r in failed) == [ann_id, bob_id]
    assert {r["error"] for r in failed} == {"550 no such user", "451 try again later"}
    assert "451" in run("deliveries", "list", "--status", "failed").out
    refused = run("deliveries", "retry", str(bob_id))
    assert refused.code == 1 and "the subscriber is bounced" in refused.err
    assert run("deliveries", "retry", "999").code == 1
    assert run("deliveries", "retry").code == 2
    assert run("deliveries", "retry", "1", "--all-failed").code == 2
    ran = run("deliveries", "retry", "--all-failed")
    assert (
        ran.out
        == "1 failed deliveries queued again, 1 left alone (subscriber or enrollment ended)\n"
    )
    assert drain() == 1  # the dispatcher reclaims it at once
    assert [m["To"] for m in outbox] == ["ann@example.com"]
    again = run("deliveries", "retry", str(ann_id))
    assert again.code == 1 and "is sent, not failed" in again.err
    assert run("deliveries", "retry", "--all-failed").code == 0  # bob's is still left alone
    listed = {r["id"]: r["status"] for r in run("deliveries", "list", "--json").json()}
    assert listed == {ann_id: "sent", bob_id: "failed"}
    assert run("deliveries", "list", "--status", "bogus").code == 2


def test_funnel_deliverability_and_activity_for_the_dashboard(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_new_york(monkeypatch)
    add("ann@example.com", "bob@example.com", "cy@example.com")
    add("dee@example.com", confirmed=False)  # still waiting to confirm
    drain()
    with transaction() as s:
        s.add(Event(kind=EventKind.COMPLAINED))
    run("subscribers", "booked", "bob@example.com")
    with reading() as s:
        (funnel,) = stats(s, "quick")
        health = deliverability(s)
        days = activity(s, days=3)
    assert (funnel.signed_up, funnel.confirmed, funnel.waiting, funnel.booked) == (4, 3, 1, 1)
    stages = [(st.name, st.count, st.of_previous, st.of_start) for st in funnel.stages()]
    assert stages[:3] == [
        ("signed up", 4, None, 1.0),
        ("confirmed", 3, 0.75, 0.75),
        ("one", 3, 1.0, 0.75),
    ]
    assert stages[-1] == ("booked", 1, None, 0.25)  # after "four", which nobody got yet
    assert funnel.steps[0].clicked is None and not funnel.clicks_tracked
    assert (health.sent, health.complained, health.hard_bounced, health.failed) == (3, 1, 0, 0)
    assert health.complaint_rate == pytest.approx(1 / 3) and health.over_line(health.complaint_rate)
    assert not health.over_line(health.bounce_rate)
    assert [(d.day.isoformat(), d.signed_up, d.booked) for d in days] == [
        ("2026-03-04", 0, 0),
        ("2026-03-05", 0, 0),
        ("2026-03-06", 4, 1),
    ]
    # Forgetting someone keeps them in the funnel's signed up and confirmed.
    assert run("subscribers", "forget", "ann@example.com", "--yes").code == 0
    with reading() as s:
        (after,) = stats(s, "quick")
    assert (after.signed_up, after.confirmed, after.waiting) == (4, 3, 1)
    shown = run("stats", "quick", terminal=True).out
    assert "confirmed (1 waiting)" in shown and "75%" in shown
    assert "—" in shown and "clicks are not tracked" in shown


def test_next_send_says_why_a_reader_waits(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["subscribers", "add", "dee@example.com", "--sequence", "quick"]
    assert run(*args, "--timezone", "Asia/Tokyo", "--confirmed").code == 0
    add("ann@example.com")
    drain()

    def why(email: str) -> NextSend | None:
        with reading() as s:
            sub = get_subscriber(s, email)
            return next_send(sub.enrollments[0])

    dee, ann = why("dee@example.com"), why("ann@example.com")
    assert dee is not None and (dee.step, dee.held) == ("two", Held.WINDOW)
    assert ann is not None and (ann.step, ann.held) == ("two", None)
    run("subscribers", "pause", "ann@example.com")
    paused = why("ann@example.com")
    assert paused is not None and paused.held is Held.PAUSED and paused.paused_until is None
    run("subscribers", "unsubscribe", "ann@example.com")
    assert why("ann@example.com") is None
