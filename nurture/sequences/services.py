"""Sequences: apply a folder, look them up, pause and resume, and place an enrollment on
its next step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.errors import NotFound
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import SendWindow, due_at, zone
from nurture.sequences.spec import SequenceSpec


def get_sequence(s: Session, slug: str) -> Sequence:
    seq = s.scalar(select(Sequence).where(Sequence.slug == slug))
    if seq is None:
        raise NotFound(f"no sequence {slug!r} (see `nurture sequences list`)")
    return seq


def live_steps(s: Session, sequence_id: int) -> list[Step]:
    return list(
        s.scalars(
            select(Step)
            .where(Step.sequence_id == sequence_id, Step.removed_at.is_(None))
            .order_by(Step.position)
        )
    )


def window_of(seq: Sequence) -> SendWindow:
    return SendWindow.from_config(seq.settings.get("send_window"))


def due_for(
    seq: Sequence, subscriber_tz: str | None, after: datetime, delay_seconds: int
) -> datetime:
    tz = zone(subscriber_tz, seq.settings.get("timezone", "UTC"))
    return due_at(after, timedelta(seconds=delay_seconds), window_of(seq), tz)


def step_after(steps: list[Step], current: Step | None) -> Step | None:
    """The step that follows `current` in the sequence's order (the first if None)."""
    if current is None:
        return steps[0] if steps else None
    return next((st for st in steps if st.position > current.position), None)


@dataclass
class ApplyResult:
    slug: str
    created: bool
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def apply_spec(s: Session, spec: SequenceSpec, source: Path | None = None) -> ApplyResult:
    """Create or update one sequence and its steps, matching steps by key."""
    seq = s.scalar(select(Sequence).where(Sequence.slug == spec.slug))
    created = seq is None
    if seq is None:
        seq = Sequence(slug=spec.slug, name=spec.name, status=SequenceStatus.ACTIVE)
        s.add(seq)
    seq.name = spec.name
    seq.settings = spec.settings_dict()
    seq.source_path = str(source) if source else seq.source_path
    s.flush()
    result = ApplyResult(slug=spec.slug, created=created)

    existing = {st.key: st for st in s.scalars(select(Step).where(Step.sequence_id == seq.id))}
    wanted = {st.key for st in spec.steps}
    # Removed steps keep their rows (deliveries point at them) but leave the order.
    for key, step in existing.items():
        if key not in wanted and step.removed_at is None:
            step.removed_at = now()
            step.position = -step.id
            result.removed.append(key)
    for position, st in enumerate(spec.steps, start=1):
        values = dict(
            position=position,
            delay_seconds=st.delay_seconds,
            subject=st.subject,
            body=st.body_text,
            body_file=st.body,
            sources=list(st.sources),
        )
        found = existing.get(st.key)
        if found is None:
            s.add(Step(sequence_id=seq.id, key=st.key, **values))
            result.added.append(st.key)
            continue
        step = found
        before = (step.position, step.delay_seconds, step.subject, step.body, step.sources)
        for name, value in values.items():
            setattr(step, name, value)
        step.removed_at = None
        if before != (step.position, step.delay_seconds, step.subject, step.body, step.sources):
            result.changed.append(st.key)
    s.flush()
    return result


def set_status(s: Session, slug: str, status: SequenceStatus) -> Sequence:
    seq = get_sequence(s, slug)
    seq.status = status
    return seq
