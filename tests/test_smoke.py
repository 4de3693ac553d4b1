"""The shortest path through the engine: apply, add, dispatch, receive."""

from __future__ import annotations

from datetime import timedelta

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.sending import send_batch
from nurture.sequences.services import get_sequence
from nurture.subscribers.services import add_subscriber


def _drain() -> int:
    sent = 0

    def inline(ids: list[int]) -> None:
        nonlocal sent
        sent += len(send_batch(ids).sent)

    dispatch_once(inline)
    return sent


def test_each_step_once_in_order(quick_sequence: str, clock: FrozenClock, outbox: list) -> None:
    clock.set(clock.now().replace(hour=14))  # 09:00 New York
    with transaction() as s:
        add_subscriber(s, "Ann@Example.com", get_sequence(s, quick_sequence), confirmed=True)
    for _ in range(6):
        _drain()
        clock.advance(timedelta(minutes=1))
    assert [m["Subject"] for m in outbox] == ["Step one", "Step two", "Step three", "Step four"]
    assert {m["To"] for m in outbox} == {"ann@example.com"}
    assert _drain() == 0
