"""`nurture keys rotate`: every sealed value moved under NURTURE_DATA_KEY, while the system runs.

The old key stays readable (NURTURE_DATA_KEY_PREVIOUS) until this finishes; new values are
sealed under the new key from the moment the processes restart with it. Rows go in batches,
each its own short transaction, so signups and sends wait for at most one batch. A row is
re-sealed only if it still holds what was read (compare and swap): one changed meanwhile was
written under the new key already, and a second pass picks up anything left behind. The
blind-index key is re-sealed last and never changes (nurture/encryption.py says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, not_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from nurture.context import current
from nurture.db import transaction
from nurture.encryption import VERSION, DataKeys
from nurture.events.models import OutboxEvent
from nurture.events.outbox import body_place
from nurture.keyring import reseal_keyring
from nurture.subscribers.models import Subscriber, sealed_place

BATCH = 500
MAX_PASSES = 5
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Sealed:
    """One sealed column: its table's model, the column, and what a value is bound to."""

    model: Any
    column: InstrumentedAttribute[Any]
    place: Callable[[Any], str]


SEALED = (
    Sealed(Subscriber, Subscriber.email_sealed, lambda r: sealed_place(r.public_id, "email")),
    Sealed(
        Subscriber,
        Subscriber.first_name_sealed,
        lambda r: sealed_place(r.public_id, "first_name"),
    ),
    Sealed(OutboxEvent, OutboxEvent.body, lambda r: body_place(r.msg_id)),
)


@dataclass(frozen=True)
class RotationResult:
    key_id: str
    stale: int  # values not sealed under the current key, before
    resealed: int
    left: int  # after (0 unless a row kept changing, or --dry-run)
    keyring: bool  # the index key was re-sealed


def _stale(keys: DataKeys, column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    current_prefix = f"{VERSION}:{keys.current.kid}:%"
    return and_(column.is_not(None), not_(column.like(current_prefix)))


def count_stale(s: Session, keys: DataKeys) -> int:
    return sum(
        int(s.scalar(select(func.count()).where(_stale(keys, spec.column))) or 0) for spec in SEALED
    )


def stale_values() -> int:
    """How many sealed values are not yet under the current key."""
    with transaction() as s:
        return count_stale(s, current().data_keys)


def _rotate_batch(s: Session, keys: DataKeys, spec: Sealed, after: int) -> tuple[int, int, int]:
    """Re-seal the next BATCH stale values of one column after id `after`:
    (rows seen, the last id seen, values re-sealed)."""
    model = spec.model
    rows = list(
        s.scalars(
            select(model)
            .where(model.id > after, _stale(keys, spec.column))
            .order_by(model.id)
            .limit(BATCH)
        )
    )
    name = spec.column.key
    changes = []
    for row in rows:
        old = getattr(row, name)
        new = keys.seal(keys.unseal(old, spec.place(row)), spec.place(row))
        changes.append({"row_id": row.id, "old": old, "new": new})
    if not changes:
        return 0, after, 0
    swap = (
        update(model)
        .where(model.id == bindparam("row_id"), spec.column == bindparam("old"))
        .values({name: bindparam("new")})
        .execution_options(synchronize_session=False)
    )
    done = s.connection().execute(swap, changes).rowcount
    return len(rows), rows[-1].id, int(done)


def _pass(keys: DataKeys, spec: Sealed, progress: Progress | None) -> int:
    """One pass over a column, BATCH rows per transaction; returns how many were re-sealed."""
    after = resealed = 0
    while True:
        with transaction() as s:
            seen, after, done = _rotate_batch(s, keys, spec, after)
        resealed += done
        if progress and done:
            progress(done)
        if seen < BATCH:
            return resealed


def rotate(*, dry_run: bool = False, progress: Progress | None = None) -> RotationResult:
    keys = current().data_keys
    with transaction() as s:
        stale = left = count_stale(s, keys)
    resealed, passes, keyring = 0, 0, False
    while not dry_run and left and passes < MAX_PASSES:
        resealed += sum(_pass(keys, spec, progress) for spec in SEALED)
        passes += 1
        with transaction() as s:
            left = count_stale(s, keys)
    if not dry_run:
        with transaction() as s:
            keyring = reseal_keyring(s.connection(), keys)
    return RotationResult(keys.current.kid, stale, resealed, left, keyring)
