"""Editing a live sequence: first a plan (pure data), then applying it.

Steps are matched by `key`. What an edit does to the people already enrolled:

- a step added after a subscriber's position (their last sent step) is sent to them; one
  added before it is not;
- a removed step's pending sends are cancelled (unclaimed ones and QUEUED deliveries); those
  enrollments move on to the following step;
- a changed delay re-times only sends not yet claimed, from the previous send (or the start)
  with the new delay;
- a renamed key is a remove plus an add;
- new quiet days move unclaimed sends that now fall on one to the next allowed day's window
  (a quiet day taken out brings nothing forward: those sends keep their time).

When a subscriber's last sent step is itself removed, a step added in its slot counts as
passed: it usually replaces what they already read. Planning reads the database but writes
nothing, so `--dry-run` shows exactly what applying would do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import (
    due_for,
    first_due,
    format_delay,
    is_immediate_first,
    window_of,
    zone,
)
from nurture.sequences.spec import SequenceSpec, StepSpec
from nurture.subscribers.models import ENDED, Enrollment, EnrollmentStatus, Subscriber


@dataclass(frozen=True)
class EnrollmentChange:
    enrollment_id: int
    next_step_key: str | None  # None: nothing left, the enrollment completes
    next_due_at: datetime | None
    why: str  # "new-step", "removed-step", "delay", "order", "complete", "quiet-day"


@dataclass
class EditPlan:
    slug: str
    created: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # content, order or delay
    # key: what of it was edited ("body 02-why.md", "subject", "sources", "order"), so a
    # dry run names an edited body instead of hiding it in "changed content".
    edits: dict[str, list[str]] = field(default_factory=dict)
    delays: dict[str, tuple[int, int]] = field(default_factory=dict)  # key: (old, new) seconds
    settings_changed: bool = False
    # Effects on people already enrolled.
    receivers: dict[str, int] = field(default_factory=dict)  # added key: how many will get it
    cancelled: dict[str, int] = field(default_factory=dict)  # removed key: pending sends dropped
    retimed: dict[str, int] = field(default_factory=dict)  # key: unclaimed sends re-timed
    completed: int = 0  # enrollments with nothing left after the edit
    quiet_moved: int = 0  # unclaimed sends moved off a (new) quiet day
    enrollment_changes: list[EnrollmentChange] = field(default_factory=list)
    cancel_delivery_ids: list[int] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (
            self.created or self.added or self.removed or self.changed or self.settings_changed
        )

    def summary(self) -> str:
        if self.created:
            return f"{self.slug}: new sequence with {len(self.added)} step(s)"
        if self.unchanged:
            return f"{self.slug}: no change"
        parts = []
        for key in self.added:
            parts.append(f"{self.receivers.get(key, 0)} will receive new step {key}")
        for key in self.removed:
            n = self.cancelled.get(key, 0)
            parts.append(f"{n} pending sends of removed step {key} are cancelled")
        for key, (old, new) in self.delays.items():
            parts.append(
                f"step {key} delay {format_delay(old)} -> {format_delay(new)}: "
                f"{self.retimed.get(key, 0)} unclaimed sends re-timed"
            )
        for key in self.changed:
            if self.edits.get(key):
                parts.append(
                    f"step {key}: {' and '.join(self.edits[key])} edited "
                    "(emails not yet sent use the new version)"
                )
        if self.completed:
            parts.append(f"{self.completed} enrollment(s) have nothing left and complete")
        if self.quiet_moved:
            parts.append(f"{self.quiet_moved} unclaimed sends moved off quiet days")
        if self.settings_changed:
            parts.append("sequence settings changed")
        return f"{self.slug}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "created": self.created,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "edits": self.edits,
            "receivers": self.receivers,
            "cancelled": self.cancelled,
            "retimed": self.retimed,
            "completed": self.completed,
            "quiet_moved": self.quiet_moved,
        }


def _step_values(position: int, st: StepSpec) -> dict[str, Any]:
    return {
        "position": position,
        "delay_seconds": st.delay_seconds,
        "subject": st.subject,
        "body": st.body_text,
        "body_file": st.body,
        "sources": list(st.sources),
    }


def plan_edit(s: Session, spec: SequenceSpec) -> EditPlan:
    seq = s.scalar(select(Sequence).where(Sequence.slug == spec.slug))
    if seq is None:
        return EditPlan(slug=spec.slug, created=True, added=[st.key for st in spec.steps])
    plan = EditPlan(slug=spec.slug, created=False)
    plan.settings_changed = seq.name != spec.name or seq.settings != spec.settings_dict()
    all_steps = {st.key: st for st in s.scalars(select(Step).where(Step.sequence_id == seq.id))}
    old = sorted((st for st in all_steps.values() if st.removed_at is None), key=_pos)
    old_rank = {st.key: i + 1 for i, st in enumerate(old)}
    new_keys = [st.key for st in spec.steps]
    plan.removed = [st.key for st in old if st.key not in set(new_keys)]
    plan.added = [k for k in new_keys if k not in old_rank]
    for st in spec.steps:
        found = all_steps.get(st.key)
        if found is None or found.removed_at is not None:
            continue
        if found.delay_seconds != st.delay_seconds:
            plan.delays[st.key] = (found.delay_seconds, st.delay_seconds)
        edits = _edits(found, st)
        # Order counts relative to the other kept steps, not as absolute positions.
        if _order_moved(st.key, old, new_keys):
            edits.append("order")
        if edits or st.key in plan.delays:
            plan.changed.append(st.key)
            plan.edits[st.key] = edits
    if plan.unchanged:
        return plan
    _plan_enrollments(s, seq, plan, spec, all_steps, old_rank)
    return plan


def _edits(found: Step, st: StepSpec) -> list[str]:
    """What of a kept step the new files change, besides its delay (reported apart)."""
    edits = []
    if found.body != st.body_text or found.body_file != st.body:
        edits.append(f"body {st.body}")
    if found.subject != st.subject:
        edits.append("subject")
    if list(found.sources) != list(st.sources):
        edits.append("sources")
    return edits


def _pos(st: Step) -> int:
    return st.position


def _order_moved(key: str, old: list[Step], new_keys: list[str]) -> bool:
    kept_old = [st.key for st in old if st.key in set(new_keys)]
    kept_new = [k for k in new_keys if k in set(kept_old)]
    return kept_old.index(key) != kept_new.index(key)


def _plan_enrollments(
    s: Session,
    seq: Sequence,
    plan: EditPlan,
    spec: SequenceSpec,
    all_steps: dict[str, Step],
    old_rank: dict[str, int],
) -> None:
    by_id = {st.id: st for st in all_steps.values()}
    new_keys = [st.key for st in spec.steps]
    new_delay = {st.key: st.delay_seconds for st in spec.steps}
    # For each step of the new list: the old rank of the kept step before it (0 at the top).
    anchors: dict[str, int] = {}
    anchor = 0
    for key in new_keys:
        if key in old_rank and key not in plan.added:
            anchor = old_rank[key]
        anchors[key] = anchor
    revived = {all_steps[k].id for k in plan.added if k in all_steps}
    already: set[tuple[int, int]] = set()
    if revived:
        # A step that comes back may already have been sent to some: the unique key on
        # (enrollment, step) would make it unclaimable, so it counts as passed for them.
        already = {
            (r.enrollment_id, r.step_id)
            for r in s.execute(
                select(Delivery.enrollment_id, Delivery.step_id).where(
                    Delivery.step_id.in_(revived)
                )
            )
        }
    removed_ids = {all_steps[k].id for k in plan.removed}
    queued = {
        r.enrollment_id: (r.id, r.step_id)
        for r in s.execute(
            select(Delivery.id, Delivery.enrollment_id, Delivery.step_id)
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Enrollment.sequence_id == seq.id, Delivery.status == DeliveryStatus.QUEUED)
        )
    }
    for delivery_id, step_id in queued.values():
        if step_id in removed_ids:
            plan.cancel_delivery_ids.append(delivery_id)

    preview = Sequence(slug=seq.slug, name=spec.name, settings=spec.settings_dict())
    quiet_changed = seq.config.quiet_days != preview.config.quiet_days
    window = window_of(preview)
    receivers: Counter[str] = Counter()
    cancelled: Counter[str] = Counter()
    retimed: Counter[str] = Counter()
    rows = s.execute(
        select(
            Enrollment.id,
            Enrollment.status,
            Enrollment.next_step_id,
            Enrollment.next_due_at,
            Enrollment.last_step_id,
            Enrollment.last_sent_at,
            Enrollment.started_at,
            Subscriber.timezone,
        )
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Enrollment.sequence_id == seq.id, Enrollment.status.not_in(list(ENDED)))
    )
    for row in rows:
        last = by_id.get(row.last_step_id) if row.last_step_id else None
        nxt = by_id.get(row.next_step_id) if row.next_step_id else None
        in_flight = queued.get(row.id)
        flight_step = by_id.get(in_flight[1]) if in_flight else None
        # The cursor: how far along the old order this person is (old ranks are 1..n).
        if flight_step is not None and flight_step.key in old_rank:
            # Claimed: that send is as good as done unless its step is removed.
            removed_flight = flight_step.key in plan.removed
            cursor = float(old_rank[flight_step.key]) - (0.5 if removed_flight else 0.0)
        elif last is not None and last.key in old_rank:
            cursor = float(old_rank[last.key])
        elif nxt is not None and nxt.key in old_rank:
            cursor = old_rank[nxt.key] - 0.5
        else:
            cursor = 0.0

        def passed(key: str, cursor: float = cursor, eid: int = row.id) -> bool:
            if key in plan.added:
                step = all_steps.get(key)
                if step is not None and (eid, step.id) in already:
                    return True
                return anchors[key] < cursor
            return old_rank[key] <= cursor

        remaining = [k for k in new_keys if not passed(k)]
        for key in remaining:
            if key in plan.added:
                receivers[key] += 1
        if row.status == EnrollmentStatus.PENDING:
            continue  # not started: they will get the new sequence from the top
        if in_flight is not None:
            if flight_step is None or flight_step.key not in plan.removed:
                continue  # the worker advances them after the send, on the new order
            cancelled[flight_step.key] += 1
        elif row.next_due_at is None:
            continue  # nothing scheduled (e.g. sending failed for good): leave as is
        elif nxt is not None and nxt.key in plan.removed:
            cancelled[nxt.key] += 1
        new_next = remaining[0] if remaining else None
        current = nxt.key if nxt is not None and in_flight is None else None
        if new_next is None:
            plan.completed += 1
            plan.enrollment_changes.append(EnrollmentChange(row.id, None, None, "complete"))
            continue
        delay_changed = new_next in plan.delays
        if new_next == current and not delay_changed:
            tz = zone(row.timezone, preview.config.timezone)
            immediate = row.last_step_id is None and is_immediate_first(
                preview, new_delay[new_next]
            )
            if quiet_changed and not immediate and not window.contains(row.next_due_at, tz):
                # Same step, same delay, but the time is no longer sendable: the worker would
                # hold it back at send time anyway; moving it now keeps `schedule` truthful.
                plan.quiet_moved += 1
                due = window.next_open(row.next_due_at, tz)
                plan.enrollment_changes.append(EnrollmentChange(row.id, new_next, due, "quiet-day"))
            continue
        if new_next == current:
            why = "delay"
            retimed[new_next] += 1
        elif new_next in plan.added:
            why = "new-step"
        elif current is None or current in plan.removed:
            why = "removed-step"
        else:
            why = "order"
        if row.last_step_id is None:
            due = first_due(preview, row.timezone, row.started_at or now(), new_delay[new_next])
        else:
            after = row.last_sent_at or row.started_at or now()
            due = due_for(preview, row.timezone, after, new_delay[new_next])
        if why != "delay" or due != row.next_due_at:
            plan.enrollment_changes.append(EnrollmentChange(row.id, new_next, due, why))
    plan.receivers = {k: receivers[k] for k in plan.added}
    plan.cancelled = {k: cancelled[k] for k in plan.removed}
    plan.retimed = dict(retimed)


def apply_plan(s: Session, spec: SequenceSpec, plan: EditPlan, source: Path | None = None) -> None:
    """Write the steps, then move the enrollments as the plan says. Nothing else is read."""
    seq = s.scalar(select(Sequence).where(Sequence.slug == spec.slug))
    if seq is None:
        seq = Sequence(slug=spec.slug, name=spec.name, status=SequenceStatus.ACTIVE)
        s.add(seq)
    seq.name = spec.name
    seq.settings = spec.settings_dict()
    seq.source_path = str(source) if source else seq.source_path
    s.flush()
    existing = {st.key: st for st in s.scalars(select(Step).where(Step.sequence_id == seq.id))}
    t = now()
    for key in plan.removed:
        gone = existing[key]
        gone.removed_at = t
        gone.position = -gone.id  # removed steps keep their rows (deliveries point at them)
    s.flush()
    for position, st in enumerate(spec.steps, start=1):
        values = _step_values(position, st)
        step = existing.get(st.key)
        if step is None:
            step = Step(sequence_id=seq.id, key=st.key, **values)
            s.add(step)
            existing[st.key] = step
        else:
            for name, value in values.items():
                setattr(step, name, value)
            step.removed_at = None
    s.flush()
    if plan.cancel_delivery_ids:
        s.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(plan.cancel_delivery_ids),
                Delivery.status == DeliveryStatus.QUEUED,
            )
            .values(status=DeliveryStatus.CANCELLED, error="step removed")
            .execution_options(synchronize_session=False)
        )
    rows: list[dict[str, Any]] = []
    for ch in plan.enrollment_changes:
        if ch.next_step_key is None:
            rows.append(
                {
                    "id": ch.enrollment_id,
                    "status": EnrollmentStatus.COMPLETED,
                    "next_step_id": None,
                    "next_due_at": None,
                    "ended_at": t,
                }
            )
        else:
            rows.append(
                {
                    "id": ch.enrollment_id,
                    "next_step_id": existing[ch.next_step_key].id,
                    "next_due_at": ch.next_due_at,
                }
            )
    _bulk_update_enrollments(s, rows)


def _bulk_update_enrollments(s: Session, values: list[dict[str, Any]]) -> None:
    # Grouped by the set of columns, since an executemany needs one shape per statement.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for v in values:
        groups.setdefault(tuple(sorted(v)), []).append(v)
    for rows in groups.values():
        for i in range(0, len(rows), 1000):
            s.execute(update(Enrollment), rows[i : i + 1000])
