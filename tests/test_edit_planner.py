"""The live-edit planner's steps, each on its own (nurture/sequences/editing.py). The whole
edit, against a database and a worker, is tested in tests/test_cli_sequences.py."""

from __future__ import annotations

from datetime import UTC, datetime

from nurture.sequences.editing import (
    EditPlan,
    EnrollmentChange,
    Slot,
    cancelled_send,
    claims_to_cancel,
    compare_steps,
    enrollment_updates,
    left_alone,
    live_order,
    reader_slot,
    step_slots,
    still_to_send,
    why_moved,
)
from nurture.sequences.models import Step
from nurture.sequences.spec import StepSpec
from nurture.subscribers.models import EnrollmentStatus

T = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)
OLD = {"one": 1, "two": 2, "three": 3}


def step(key: str, position: int, removed: bool = False, delay: int = 60) -> Step:
    return Step(
        key=key,
        position=position,
        delay_seconds=delay,
        subject=f"Step {key}",
        body="text",
        body_file=f"{key}.md",
        sources=[],
        removed_at=T if removed else None,
    )


def spec(key: str, delay: str = "1m", subject: str | None = None) -> StepSpec:
    return StepSpec(
        key=key, delay=delay, subject=subject or f"Step {key}", body=f"{key}.md", body_text="text"
    )


def test_live_order_ranks_live_steps_by_position() -> None:
    steps = {
        "b": step("b", 2),
        "a": step("a", 1),
        "gone": step("gone", -7, removed=True),
        "c": step("c", 5),
    }
    assert live_order(steps) == {"a": 1, "b": 2, "c": 3}


def test_compare_steps_names_what_the_files_change() -> None:
    steps = {"one": step("one", 1), "two": step("two", 2), "three": step("three", 3)}
    plan = EditPlan(slug="s", created=False)
    compare_steps(
        plan, steps, [spec("three"), spec("one", subject="New"), spec("four"), spec("two", "2d")]
    )
    assert plan.added == ["four"]
    assert plan.removed == []
    assert plan.delays == {"two": (60, 2 * 86400)}
    # three moved ahead of the others: one and two keep their order relative to each other.
    assert plan.edits == {"three": ["order"], "one": ["subject", "order"], "two": ["order"]}
    assert plan.changed == ["three", "one", "two"]


def test_compare_steps_a_removed_step_coming_back_is_added() -> None:
    steps = {"one": step("one", 1), "old": step("old", -3, removed=True)}
    plan = EditPlan(slug="s", created=False)
    compare_steps(plan, steps, [spec("one"), spec("old")])
    assert plan.added == ["old"] and plan.removed == [] and plan.changed == []


def test_step_slots_put_an_added_step_in_the_gap_after_the_kept_one_before_it() -> None:
    slots = step_slots(["new-top", "one", "extra", "three", "last"], OLD)
    assert slots == {
        "new-top": Slot(0, 1),
        "one": Slot(1),
        "extra": Slot(1, 1),
        "three": Slot(3),
        "last": Slot(3, 1),
    }
    assert slots["new-top"] < slots["one"] < slots["extra"] < slots["three"] < slots["last"]


def test_reader_slot_after_a_sent_step() -> None:
    assert reader_slot(OLD, None, False, "two", "three") == Slot(2)


def test_reader_slot_a_claimed_send_counts_as_sent_unless_its_step_is_removed() -> None:
    assert reader_slot(OLD, "three", False, "two", None) == Slot(3)
    assert reader_slot(OLD, "three", True, "two", None) == Slot(2, 1)


def test_reader_slot_waiting_for_a_step_with_nothing_sent() -> None:
    assert reader_slot(OLD, None, False, None, "two") == Slot(1, 1)


def test_reader_slot_keys_without_an_old_rank_tell_nothing() -> None:
    assert reader_slot(OLD, "gone", False, "gone-too", "three") == Slot(2, 1)
    assert reader_slot(OLD, None, False, None, None) == Slot(0)


def test_still_to_send_is_what_lies_after_the_reader() -> None:
    keys = ["one", "extra", "two", "three", "last"]
    slots = step_slots(keys, OLD)
    assert still_to_send(keys, slots, Slot(1), set()) == ["extra", "two", "three", "last"]
    # Waiting for two: the step added just before it is behind them.
    assert still_to_send(keys, slots, Slot(1, 1), set()) == ["two", "three", "last"]
    assert still_to_send(keys, slots, Slot(3), set()) == ["last"]


def test_still_to_send_skips_a_returning_step_the_reader_already_had() -> None:
    keys = ["one", "back", "two"]
    slots = step_slots(keys, {"one": 1, "two": 2})
    assert still_to_send(keys, slots, Slot(0), {"back"}) == ["one", "two"]


def test_left_alone_while_a_kept_step_is_in_flight_or_nothing_is_scheduled() -> None:
    assert left_alone(True, "two", None, ["three"])
    assert not left_alone(True, "three", None, ["three"])
    assert left_alone(False, None, None, [])
    assert not left_alone(False, None, T, [])


def test_cancelled_send_is_the_removed_step_claimed_or_scheduled() -> None:
    assert cancelled_send(True, "three", "two", ["three"]) == "three"
    assert cancelled_send(False, None, "three", ["three"]) == "three"
    assert cancelled_send(False, None, "two", ["three"]) is None
    assert cancelled_send(True, "two", "three", ["three"]) is None


def test_why_moved() -> None:
    plan = EditPlan(slug="s", created=False, added=["new"], removed=["gone"])
    assert why_moved("two", "two", plan) == "delay"
    assert why_moved("new", "two", plan) == "new-step"
    assert why_moved("two", None, plan) == "removed-step"
    assert why_moved("three", "gone", plan) == "removed-step"
    assert why_moved("three", "two", plan) == "order"


def test_claims_to_cancel_are_those_of_removed_steps() -> None:
    claims = {10: (100, 1), 11: (101, 2), 12: (102, 1)}
    assert claims_to_cancel(claims, {1}) == [100, 102]
    assert claims_to_cancel(claims, set()) == []


def test_enrollment_updates_move_or_complete() -> None:
    changes = [
        EnrollmentChange(1, "two", T, "delay"),
        EnrollmentChange(2, None, None, "complete"),
    ]
    assert enrollment_updates(changes, {"two": 7}, T) == [
        {"id": 1, "next_step_id": 7, "next_due_at": T},
        {
            "id": 2,
            "status": EnrollmentStatus.COMPLETED,
            "next_step_id": None,
            "next_due_at": None,
            "ended_at": T,
        },
    ]
