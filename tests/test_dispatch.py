"""Claims, leases and the re-check before each send (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.booking.booked import mark_booked
from nurture.clock import FrozenClock
from nurture.context import current, use
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.sending import send_batch
from nurture.mail.backends import backend_from_url
from nurture.sequences.models import SequenceStatus
from nurture.sequences.services import get_sequence, set_status
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
from nurture.subscribers.unsubscribe import unsubscribe
from tests.support import SMTPServer


def _add(n: int, slug: str = "quick", prefix: str = "r") -> None:
    with transaction() as s:
        seq = get_sequence(s, slug)
        for i in range(n):
            add_subscriber(s, f"{prefix}{i}@example.com", seq, timezone="UTC", confirmed=True)


def _claim() -> list[int]:
    ids: list[int] = []
    dispatch_once(ids.extend)
    return ids


@pytest.fixture
def morning(clock: FrozenClock) -> FrozenClock:
    clock.set(clock.now().replace(hour=9, minute=30))  # inside 09:00-11:00 UTC
    return clock


def test_two_dispatchers_at_once_claim_each_step_once(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(400)
    claims: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    runtime = current()  # both dispatchers share it, as a worker's threads do

    def run(i: int) -> None:
        start.wait()
        with use(runtime):
            for _ in range(5):
                dispatch_once(claims[i].extend, limit=37)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = claims[0] + claims[1]
    assert len(every) == len(set(every)) == 400
    # Both did real work on PostgreSQL; on SQLite they take turns, which is just as correct.
    send_batch(every)
    assert len(outbox) == 400
    assert len({m["To"] for m in outbox}) == 400


def test_unsubscribe_between_claim_and_send_stops_the_message(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(3)
    ids = _claim()
    assert len(ids) == 3
    with transaction() as s:
        unsubscribe(s, get_subscriber(s, "r1@example.com"))
        mark_booked(s, get_subscriber(s, "r2@example.com"))
    result = send_batch(ids)
    assert [m["To"] for m in outbox] == ["r0@example.com"]
    assert len(result.sent) == 1
    with transaction() as s:
        statuses = dict(s.execute(select(Delivery.id, Delivery.status)).all())
        assert sorted(statuses.values()) == ["cancelled", "cancelled", "sent"]


def test_unsubscribe_after_claim_is_rechecked_even_if_cancel_missed(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(1)
    ids = _claim()
    with transaction() as s:
        # Change the status behind the service's back: the worker must still refuse.
        s.scalars(select(Subscriber)).one().status = SubscriberStatus.UNSUBSCRIBED
    send_batch(ids)
    assert outbox == []


@pytest.mark.parametrize("status", ["pending", "unsubscribed", "bounced", "complained"])
def test_an_active_enrollment_of_someone_not_confirmed_still_sends_nothing(
    quick_sequence: str, morning: FrozenClock, outbox: list, status: str
) -> None:
    """The claim reads enrollments alone (an active one is always a confirmed person's);
    should that rule ever break, the send's re-check of the person still holds."""
    _add(2)
    with transaction() as s:
        first = s.scalars(select(Subscriber).order_by(Subscriber.id)).first()
        assert first is not None
        first.status = SubscriberStatus(status)  # behind the services' back
    send_batch(_claim())
    assert len(outbox) == 1
    with transaction() as s:
        gone = s.scalars(
            select(Delivery).join(Enrollment).where(Enrollment.subscriber_id == first.id)
        ).all()
        assert [d.status for d in gone] in ([], [DeliveryStatus.CANCELLED])


@pytest.mark.parametrize("leave", ["unsubscribe", "forget", "book"])
def test_leaving_while_a_message_is_on_the_wire_waits_for_its_record(
    quick_sequence: str, morning: FrozenClock, leave: str
) -> None:
    """The send locks the delivery and the enrollment, not the person: whatever stops the
    mail ends the enrollment in its own transaction, so it waits for the message in flight
    and commits after its record, and nothing goes after it."""
    from nurture.subscribers.privacy import forget

    _add(1)
    ids = _claim()
    runtime = current()
    with SMTPServer(delay=1.0) as smtp:  # the server holds the message (and so the lock)
        backend = backend_from_url(smtp.url)

        def send() -> None:
            with use(runtime):
                send_batch(ids, backend)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 10
        while not smtp.handler.envelopes_started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert smtp.handler.envelopes_started, "the message never reached the server"
        started = time.monotonic()
        with transaction() as s:
            sub = get_subscriber(s, "r0@example.com")
            {"unsubscribe": unsubscribe, "book": mark_booked}.get(
                leave, lambda s, sub: forget(s, "r0@example.com")
            )(s, sub)
        waited = time.monotonic() - started
        sender.join()
        assert len(smtp.messages) == 1
    assert waited > 0.3  # it waited for the message's record
    with transaction() as s:
        rows = s.scalars(select(Delivery)).all()
        assert [d.status for d in rows] in ([], [DeliveryStatus.SENT])  # forgotten: gone
    assert _claim() == []


def test_lost_work_is_reclaimed_after_its_lease(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(2)
    ids = _claim()  # ... and the worker that got them died
    assert _claim() == []  # still leased
    morning.advance(timedelta(minutes=6))  # lease is 300 s
    again = _claim()
    assert sorted(again) == sorted(ids)
    send_batch(again)
    send_batch(ids)  # a late duplicate task finds them sent and does nothing
    assert len(outbox) == 2


def test_paused_sequence_holds_and_resume_sends(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(2)
    ids = _claim()
    with transaction() as s:
        set_status(s, quick_sequence, SequenceStatus.PAUSED)
    send_batch(ids)  # claimed before the pause: put back, not lost
    assert outbox == []
    assert _claim() == []
    with transaction() as s:
        set_status(s, quick_sequence, SequenceStatus.ACTIVE)
    send_batch(_claim())
    assert len(outbox) == 2


def test_closed_window_waits_for_the_next_morning(
    quick_sequence: str, morning: FrozenClock, outbox: list
) -> None:
    _add(1)
    send_batch(_claim())  # step one at 09:30
    morning.advance(timedelta(minutes=2))
    ids = _claim()
    morning.set(morning.now().replace(hour=12))  # the worker was slow: window closed
    send_batch(ids)
    assert len(outbox) == 1
    with transaction() as s:
        e = s.scalars(select(Enrollment)).one()
        assert e.next_due_at is not None
        assert e.next_due_at == (morning.now() + timedelta(days=1)).replace(hour=9, minute=0)


def test_transient_failure_retries_with_backoff(quick_sequence: str, morning: FrozenClock) -> None:
    _add(1)
    refuse = {"code": 451}
    with SMTPServer(refuse=lambda _addr: refuse["code"]) as smtp:
        backend = backend_from_url(smtp.url)
        result = send_batch(_claim(), backend)
        assert result.retry and not result.sent
        assert _claim() == []  # backing off
        morning.advance(timedelta(minutes=2))
        ids = _claim()
        assert ids
        refuse["code"] = 0
        assert send_batch(ids, backend_from_url(smtp.url)).sent == ids
        assert len(smtp.messages) == 1


def test_permanent_failure_bounces_and_ends_enrollments(
    quick_sequence: str, morning: FrozenClock
) -> None:
    _add(2)
    with SMTPServer(refuse=lambda addr: 550 if addr.startswith("r1@") else None) as smtp:
        result = send_batch(_claim(), backend_from_url(smtp.url))
        assert len(result.sent) == 1 and len(result.failed) == 1
    with transaction() as s:
        sub = get_subscriber(s, "r1@example.com")
        assert sub.status == SubscriberStatus.BOUNCED
        assert {e.status for e in sub.enrollments} == {EnrollmentStatus.BOUNCED}
        failed = s.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED)).one()
        assert "550" in (failed.error or "")
        assert "r1@" not in (failed.error or "")


def test_unreachable_server_keeps_everything_for_later(
    quick_sequence: str, morning: FrozenClock
) -> None:
    _add(2)
    result = send_batch(_claim(), backend_from_url("smtp://127.0.0.1:9"))
    assert len(result.retry) == 2
    with transaction() as s:
        assert {d.status for d in s.scalars(select(Delivery))} == {DeliveryStatus.QUEUED}


def test_policy_refusal_fails_the_send_but_does_not_bounce_the_reader(
    quick_sequence: str, morning: FrozenClock
) -> None:
    _add(1)

    with SMTPServer(refuse=lambda _a: 550) as smtp:
        smtp.handler.refuse_text = "5.7.26 unauthenticated mail is prohibited"
        result = send_batch(_claim(), backend_from_url(smtp.url))
    assert len(result.failed) == 1
    with transaction() as s:
        assert get_subscriber(s, "r0@example.com").status == SubscriberStatus.CONFIRMED
        failed = s.scalars(select(Delivery)).one()
        assert failed.status == DeliveryStatus.FAILED
        assert failed.error == "recipient refused: 550 5.7.26"


def test_a_large_backlog_is_claimed_in_one_pass(db: str, clock: FrozenClock, outbox: list) -> None:
    # More rows than one multi-row INSERT may carry parameters for (PostgreSQL: 65,535;
    # SQLite: 32,766 unless built with more).
    from bench.throughput import seed

    seed(10_000)
    ids: list[int] = []
    result = dispatch_once(ids.extend, limit=12_000)
    assert result.claimed == len(ids) == len(set(ids)) == 10_000
