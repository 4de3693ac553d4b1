"""The shortest path through the engine: apply, add, dispatch, receive."""

from __future__ import annotations

from datetime import timedelta

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from tests.cli_helpers import drain


def test_each_step_once_in_order(quick_sequence: str, clock: FrozenClock, outbox: list) -> None:
    clock.set(clock.now().replace(hour=14))  # 09:00 New York
    with transaction() as s:
        add_subscriber(s, "Ann@Example.com", get_sequence(s, quick_sequence), confirmed=True)
    for _ in range(6):
        drain()
        clock.advance(timedelta(minutes=1))
    assert [m["Subject"] for m in outbox] == ["Step one", "Step two", "Step three", "Step four"]
    assert {m["To"] for m in outbox} == {"ann@example.com"}
    assert drain() == 0


def test_dispatch_command_sends_in_one_pass(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    from tests.cli_helpers import run

    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, quick_sequence), confirmed=True)
    ran = run("dispatch")
    assert ran.code == 0 and "sent 1" in ran.out
    assert [m["To"] for m in outbox] == ["ann@example.com"]


def test_add_without_confirmed_sends_only_the_confirmation(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    from tests.cli_helpers import run

    ran = run("subscribers", "add", "bea@example.com", "--sequence", quick_sequence)
    assert ran.code == 0 and "confirmation email sent" in ran.out
    assert len(outbox) == 1 and "/confirm/" in outbox[0].get_body(("plain",)).get_content()
    assert run("dispatch").code == 0
    assert len(outbox) == 1  # nothing of the sequence before they confirm
