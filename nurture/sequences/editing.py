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

Planning is the slow part (every reader placed, in Python), so `sequences apply` plans in a
reading transaction and only applies under the write lock: on SQLite nobody waits for the
planning. What changed in between (a send, a claim, a pause, a new reader) is placed again
under the lock, from its fresh row (`_replace_changed`): a plan never writes from a stale
row.

How the planner places people: every step of the new order gets a `Slot` in the old order
(a kept step its own rank, an added step the gap after the kept step before it), and every
reader gets the slot they have reached. What lies at or before the reader's slot is behind
them; the rest is still to send. Each rule below is one small function, tested on its own in
tests/test_edit_planner.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.db import chunks
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import (
    due_for,
    first_due,
    format_delay,
    is_immediate_first,
    reader_zone,
    window_of,
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
    # What the plan was made from, for applying it later: every reader's row as read, and
    # what places a reader (None for a new sequence, or when nothing moves people).
    seen: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    context: _Edit | None = field(default=None, repr=False)

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


# --- what the new files change ---------------------------------------------------------


def plan_edit(s: Session, spec: SequenceSpec) -> EditPlan:
    seq = s.scalar(select(Sequence).where(Sequence.slug == spec.slug))
    if seq is None:
        return EditPlan(slug=spec.slug, created=True, added=[st.key for st in spec.steps])
    plan = EditPlan(slug=spec.slug, created=False)
    plan.settings_changed = seq.name != spec.name or seq.settings != spec.settings_dict()
    all_steps = {st.key: st for st in s.scalars(select(Step).where(Step.sequence_id == seq.id))}
    compare_steps(plan, all_steps, spec.steps)
    if plan.unchanged:
        return plan
    _plan_enrollments(s, seq, plan, spec, all_steps)
    return plan


def live_order(all_steps: dict[str, Step]) -> dict[str, int]:
    """The live steps' ranks in the old order, 1..n (removed steps have none)."""
    live = sorted((st for st in all_steps.values() if st.removed_at is None), key=_pos)
    return {st.key: rank for rank, st in enumerate(live, start=1)}


def compare_steps(plan: EditPlan, all_steps: dict[str, Step], new: list[StepSpec]) -> None:
    """Fill in which steps the edit adds, removes and changes (and how)."""
    old_rank = live_order(all_steps)
    new_keys = [st.key for st in new]
    plan.removed = [key for key in old_rank if key not in set(new_keys)]
    plan.added = [key for key in new_keys if key not in old_rank]
    for st in new:
        if st.key not in old_rank:
            continue
        found = all_steps[st.key]
        if found.delay_seconds != st.delay_seconds:
            plan.delays[st.key] = (found.delay_seconds, st.delay_seconds)
        edits = _edits(found, st)
        # Order counts relative to the other kept steps, not as absolute positions.
        if _order_moved(st.key, list(old_rank), new_keys):
            edits.append("order")
        if edits or st.key in plan.delays:
            plan.changed.append(st.key)
            plan.edits[st.key] = edits


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


def _order_moved(key: str, old_keys: list[str], new_keys: list[str]) -> bool:
    kept_old = [k for k in old_keys if k in set(new_keys)]
    kept_new = [k for k in new_keys if k in set(kept_old)]
    return kept_old.index(key) != kept_new.index(key)


# --- where each reader stands ----------------------------------------------------------


class Slot(NamedTuple):
    """A place in the old order: `rank` is an old live step's rank (1..n; 0 is before the
    first), `gap` is 1 for the gap just after it. Slots compare in sequence order."""

    rank: int
    gap: int = 0


def step_slots(new_keys: list[str], old_rank: dict[str, int]) -> dict[str, Slot]:
    """Each step of the new order placed in the old one. An added step has no rank of its
    own: it sits in the gap after the kept step before it (rank 0 at the top)."""
    slots: dict[str, Slot] = {}
    before = 0
    for key in new_keys:
        if key in old_rank:
            before = old_rank[key]
            slots[key] = Slot(before)
        else:
            slots[key] = Slot(before, 1)
    return slots


def reader_slot(
    old_rank: dict[str, int],
    claimed: str | None,
    claimed_removed: bool,
    last: str | None,
    waiting_for: str | None,
) -> Slot:
    """How far along the old order a reader is; what sits at or before it is behind them.
    Steps are named by key; a key without an old rank (removed earlier) tells nothing."""
    if claimed in old_rank:
        # A claimed send is as good as done, unless its step is removed; then a step added
        # in its slot counts as passed (it usually replaces what they were about to read).
        rank = old_rank[claimed]
        return Slot(rank - 1, 1) if claimed_removed else Slot(rank)
    if last in old_rank:
        return Slot(old_rank[last])
    if waiting_for in old_rank:
        # Nothing sent that we know of: a step added just before the one they wait for
        # came too late for them, like any step added before their position.
        return Slot(old_rank[waiting_for] - 1, 1)
    return Slot(0)


def still_to_send(
    new_keys: list[str], slots: dict[str, Slot], reader: Slot, had: set[str]
) -> list[str]:
    """The new order minus what is behind the reader. `had`: added steps that come back
    and were already sent to them; the unique (enrollment, step) key would make those
    unclaimable, so they count as passed."""
    return [key for key in new_keys if key not in had and slots[key] > reader]


# --- what happens to each reader -------------------------------------------------------


def left_alone(
    claimed: bool, claimed_key: str | None, next_due_at: datetime | None, removed: list[str]
) -> bool:
    """The edit leaves a started reader alone when a send of a kept step is in flight (the
    worker advances them after it, on the new order) or nothing is scheduled (e.g. sending
    failed for good)."""
    if claimed:
        return claimed_key not in removed
    return next_due_at is None


def cancelled_send(
    claimed: bool, claimed_key: str | None, next_key: str | None, removed: list[str]
) -> str | None:
    """The removed step whose pending send (claimed, or merely scheduled) this reader loses."""
    key = claimed_key if claimed else next_key
    return key if key in removed else None


def why_moved(new_next: str, current: str | None, plan: EditPlan) -> str:
    """Why a reader's next step or due time changes (EnrollmentChange.why)."""
    if new_next == current:
        return "delay"
    if new_next in plan.added:
        return "new-step"
    if current is None or current in plan.removed:
        return "removed-step"
    return "order"


def claims_to_cancel(claims: dict[int, tuple[int, int]], removed_ids: set[int]) -> list[int]:
    """Queued deliveries (enrollment: (delivery, step)) of removed steps."""
    return [delivery_id for delivery_id, step_id in claims.values() if step_id in removed_ids]


@dataclass
class _Edit:
    """What planning one reader needs besides their row; built once per edit."""

    plan: EditPlan
    new_keys: list[str]
    new_delay: dict[str, int]
    old_rank: dict[str, int]
    slots: dict[str, Slot]
    key_of: dict[int, str]  # step id: key, removed steps too
    removed_ids: set[int]  # the removed steps' ids
    revived: dict[int, str]  # step id: key of added steps that existed before (removed once)
    # The sequence as the edit leaves it (settings only), for due times and the window.
    preview: Sequence
    quiet_changed: bool
    receivers: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    retimed: Counter[str] = field(default_factory=Counter)

    def change(self, enrollment_id: int, key: str | None, due: datetime | None, why: str) -> None:
        self.plan.enrollment_changes.append(EnrollmentChange(enrollment_id, key, due, why))


def _edit_context(
    seq: Sequence, plan: EditPlan, spec: SequenceSpec, all_steps: dict[str, Step]
) -> _Edit:
    # A transient row carrying the new settings: the scheduling rules read them from it.
    preview = Sequence(slug=seq.slug, name=spec.name, settings=spec.settings_dict())
    old_rank = live_order(all_steps)
    new_keys = [st.key for st in spec.steps]
    return _Edit(
        plan=plan,
        new_keys=new_keys,
        new_delay={st.key: st.delay_seconds for st in spec.steps},
        old_rank=old_rank,
        slots=step_slots(new_keys, old_rank),
        key_of={st.id: st.key for st in all_steps.values()},
        removed_ids={all_steps[k].id for k in plan.removed},
        revived={all_steps[k].id: k for k in plan.added if k in all_steps},
        preview=preview,
        quiet_changed=seq.config.quiet_days != preview.config.quiet_days,
    )


def _plan_enrollments(
    s: Session, seq: Sequence, plan: EditPlan, spec: SequenceSpec, all_steps: dict[str, Step]
) -> None:
    edit = _edit_context(seq, plan, spec, all_steps)
    claims = _claims(s, seq.id)
    plan.cancel_delivery_ids = claims_to_cancel(claims, edit.removed_ids)
    had = _sent_before(s, edit.revived)
    for row in _readers(s, seq.id):
        plan.seen[row.id] = tuple(row)
        _plan_reader(edit, row, claims.get(row.id), had.get(row.id, set()))
    plan.receivers = {k: edit.receivers[k] for k in plan.added}
    plan.cancelled = {k: edit.cancelled[k] for k in plan.removed}
    plan.retimed = dict(edit.retimed)
    plan.context = edit


def _replace_changed(s: Session, sequence_id: int, plan: EditPlan) -> None:
    """Under the write lock, before applying: every reader whose row is not as it was when
    the plan was made (or who enrolled since) is placed again from their row as it is now.
    The plan's counts stay those shown when it was made."""
    edit = plan.context
    if edit is None:
        return
    fresh = {row.id: row for row in _readers(s, sequence_id)}
    changed = {i for i, row in fresh.items() if plan.seen.get(i) != tuple(row)}
    if not changed:
        return
    plan.enrollment_changes = [c for c in plan.enrollment_changes if c.enrollment_id not in changed]
    claims = {i: c for i, c in _claims(s, sequence_id).items() if i in changed}
    plan.cancel_delivery_ids += claims_to_cancel(claims, edit.removed_ids)
    had = _sent_before(s, edit.revived)
    counts = (plan.completed, plan.quiet_moved)
    scratch = replace(edit, receivers=Counter(), cancelled=Counter(), retimed=Counter())
    for i in sorted(changed):
        _plan_reader(scratch, fresh[i], claims.get(i), had.get(i, set()))
    plan.completed, plan.quiet_moved = counts


def _claims(s: Session, sequence_id: int) -> dict[int, tuple[int, int]]:
    """Sends in flight: enrollment id -> (delivery id, step id) of its QUEUED delivery."""
    return {
        r.enrollment_id: (r.id, r.step_id)
        for r in s.execute(
            select(Delivery.id, Delivery.enrollment_id, Delivery.step_id)
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Enrollment.sequence_id == sequence_id, Delivery.status == DeliveryStatus.QUEUED)
        )
    }


def _sent_before(s: Session, revived: dict[int, str]) -> dict[int, set[str]]:
    """Of the steps that come back (step id: key), which each enrollment already has a
    delivery for."""
    had: dict[int, set[str]] = {}
    if not revived:
        return had
    for r in s.execute(
        select(Delivery.enrollment_id, Delivery.step_id).where(Delivery.step_id.in_(revived))
    ):
        had.setdefault(r.enrollment_id, set()).add(revived[r.step_id])
    return had


def _readers(s: Session, sequence_id: int) -> Iterable[Row[Any]]:
    """Every enrollment the edit may move: those not yet ended."""
    return s.execute(
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
        .where(Enrollment.sequence_id == sequence_id, Enrollment.status.not_in(list(ENDED)))
    )


def _plan_reader(edit: _Edit, row: Row[Any], claim: tuple[int, int] | None, had: set[str]) -> None:
    """Count what the edit means for one reader and note the change to their enrollment.
    Pending readers are counted as receivers but not moved: they start from the top."""
    plan = edit.plan
    claimed = claim is not None
    claimed_key = edit.key_of.get(claim[1]) if claim is not None else None
    last = edit.key_of.get(row.last_step_id) if row.last_step_id else None
    next_key = edit.key_of.get(row.next_step_id) if row.next_step_id else None
    at = reader_slot(edit.old_rank, claimed_key, claimed_key in plan.removed, last, next_key)
    remaining = still_to_send(edit.new_keys, edit.slots, at, had)
    edit.receivers.update(key for key in remaining if key in plan.added)
    if row.status == EnrollmentStatus.PENDING:
        return  # not started: they will get the new sequence from the top
    if left_alone(claimed, claimed_key, row.next_due_at, plan.removed):
        return
    if (gone := cancelled_send(claimed, claimed_key, next_key, plan.removed)) is not None:
        edit.cancelled[gone] += 1
    if not remaining:
        plan.completed += 1
        edit.change(row.id, None, None, "complete")
        return
    current = None if claimed else next_key
    if remaining[0] == current and remaining[0] not in plan.delays:
        _keep_off_quiet_days(edit, row, remaining[0])
        return
    _move(edit, row, remaining[0], current)


def _keep_off_quiet_days(edit: _Edit, row: Row[Any], key: str) -> None:
    """Same step, same delay, but new quiet days may make its time unsendable: the worker
    would hold it back at send time anyway; moving it now keeps `schedule` truthful."""
    tz = reader_zone(row.timezone, edit.preview.config.timezone)
    immediate = row.last_step_id is None and is_immediate_first(edit.preview, edit.new_delay[key])
    window = window_of(edit.preview)
    if edit.quiet_changed and not immediate and not window.contains(row.next_due_at, tz):
        edit.plan.quiet_moved += 1
        edit.change(row.id, key, window.next_open(row.next_due_at, tz), "quiet-day")


def _move(edit: _Edit, row: Row[Any], key: str, current: str | None) -> None:
    """A new next step, or the same one with a new delay: due from the previous send (or
    the start) with that step's new delay."""
    why = why_moved(key, current, edit.plan)
    if why == "delay":
        edit.retimed[key] += 1
    due = _due_after_edit(edit.preview, row, edit.new_delay[key])
    if (
        why != "delay" or due != row.next_due_at
    ):  # a re-time that lands on the same time is no change
        edit.change(row.id, key, due, why)


def _due_after_edit(preview: Sequence, row: Row[Any], delay: int) -> datetime:
    # A reader who has had nothing yet gets the first-step rule (maybe right away).
    if row.last_step_id is None:
        return first_due(preview, row.timezone, row.started_at or now(), delay)
    after = row.last_sent_at or row.started_at or now()
    return due_for(preview, row.timezone, after, delay)


# --- applying ---------------------------------------------------------------------------


def apply_spec(s: Session, spec: SequenceSpec, source: Path | None = None) -> EditPlan:
    """Create or update one sequence, matching steps by key, and move the people already
    enrolled as the live-edit rules say (above). Returns the plan it applied."""
    plan = plan_edit(s, spec)
    apply_plan(s, spec, plan, source)
    return plan


def apply_plan(s: Session, spec: SequenceSpec, plan: EditPlan, source: Path | None = None) -> None:
    """Write the steps, then move the enrollments as the plan says, placing again whoever
    changed since it was made (the plan may come from an earlier, reading transaction)."""
    seq = _save_sequence(s, spec, source)
    _replace_changed(s, seq.id, plan)
    t = now()
    steps = _save_steps(s, seq, spec.steps, plan.removed, t)
    _cancel_deliveries(s, plan.cancel_delivery_ids)
    step_ids = {key: step.id for key, step in steps.items()}
    _bulk_update_enrollments(s, enrollment_updates(plan.enrollment_changes, step_ids, t))


def _save_sequence(s: Session, spec: SequenceSpec, source: Path | None) -> Sequence:
    seq = s.scalar(select(Sequence).where(Sequence.slug == spec.slug))
    if seq is None:
        seq = Sequence(slug=spec.slug, name=spec.name, status=SequenceStatus.ACTIVE)
        s.add(seq)
    seq.name = spec.name
    seq.settings = spec.settings_dict()
    seq.source_path = str(source) if source else seq.source_path
    s.flush()
    return seq


def _save_steps(
    s: Session, seq: Sequence, new: list[StepSpec], removed: list[str], t: datetime
) -> dict[str, Step]:
    """Retire the removed steps, then write the new order (adding or reviving by key)."""
    existing = {st.key: st for st in s.scalars(select(Step).where(Step.sequence_id == seq.id))}
    for key in removed:
        gone = existing[key]
        gone.removed_at = t
        # Removed steps keep their rows (deliveries point at them), out of the positions
        # the live steps take next.
        gone.position = -gone.id
    s.flush()
    for position, st in enumerate(new, start=1):
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
    return existing


def _cancel_deliveries(s: Session, ids: list[int]) -> None:
    # Only those still queued: one a worker sent meanwhile stays sent.
    if ids:
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.CANCELLED, error="step removed")
            .execution_options(synchronize_session=False)
        )


def enrollment_updates(
    changes: list[EnrollmentChange], step_ids: dict[str, int], t: datetime
) -> list[dict[str, Any]]:
    """The planned changes as UPDATE parameters: a new next step and due time, or complete."""
    rows: list[dict[str, Any]] = []
    for ch in changes:
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
                    "next_step_id": step_ids[ch.next_step_key],
                    "next_due_at": ch.next_due_at,
                }
            )
    return rows


def _bulk_update_enrollments(s: Session, values: list[dict[str, Any]]) -> None:
    # Grouped by the set of columns, since an executemany needs one shape per statement.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for v in values:
        groups.setdefault(tuple(sorted(v)), []).append(v)
    for rows in groups.values():
        for chunk in chunks(rows):
            s.execute(update(Enrollment), chunk)
