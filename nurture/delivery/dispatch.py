"""Claiming due work. Due times live in the database (enrollments.next_due_at); a dispatch
pass turns due enrollments into QUEUED deliveries and hands their ids to workers.

Claims are atomic: on PostgreSQL one statement per slice picks the candidates with FOR
UPDATE SKIP LOCKED (so two dispatchers never claim the same enrollment), clears their due
time and inserts their deliveries, all in the server. SQLite has no SKIP LOCKED and no
data-modifying CTE, but every transaction there begins IMMEDIATE (one writer at a time) and
the claiming UPDATE is conditional, checked by row count. A delivery row is unique per
(enrollment, step), so even a bug here could not record the same step twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from sqlalchemy import (
    Insert,
    Integer,
    Row,
    and_,
    any_,
    bindparam,
    column,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from nurture.clock import now
from nurture.context import current
from nurture.db import chunks, transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.models import Sequence as SequenceRow
from nurture.sequences.models import SequenceStatus
from nurture.subscribers.models import Enrollment
from nurture.subscribers.rules import claimable

Enqueue = Callable[[list[int]], None]
# A string: Row takes its column types this way only from SQLAlchemy 2.1 on.
_DueRow: TypeAlias = "Row[int, int, int | None, datetime | None]"


@dataclass
class DispatchResult:
    claimed: int = 0
    reclaimed: int = 0
    batches: int = 0


# Before every due time: where a dispatch pass starts claiming.
START: tuple[datetime, int] = (datetime(1, 1, 1, tzinfo=UTC), 0)


@dataclass
class Claimed:
    ids: list[int]  # the new QUEUED deliveries
    # The last (next_due_at, enrollment id) claimed: where the pass's next slice starts.
    last: tuple[datetime, int]


def claim_due(
    s: Session, at: datetime, limit: int, lease: timedelta, after: tuple[datetime, int] = START
) -> Claimed:
    """Turn up to `limit` enrollments due by `at`, and after `after` in claiming order, into
    QUEUED deliveries. Starting where the previous slice ended keeps a pass over a large
    backlog from rereading the index entries of all it claimed (they stay until vacuum)."""
    params = {"at": at, "limit": limit, "after_due": after[0], "after_id": after[1]}
    if s.get_bind().dialect.name == "postgresql":
        params["lease_until"] = at + lease
        # Core, not the ORM: a parameter dict given to an ORM INSERT reads as a row.
        rows = s.connection().execute(CLAIM, params).all()
        ids = [r.id for r in rows]
    else:
        rows = s.execute(_DUE, params).all()
        if rows:
            _take(s, [r.id for r in rows])
        ids = _insert_queued(s, rows, at, lease) if rows else []
    last = max(((r.next_due_at, r.enrollment_id) for r in rows), default=after)
    return Claimed(ids, last)


# Due enrollments of active sequences, oldest due first.
_DUE = (
    select(
        Enrollment.id,
        Enrollment.id.label("enrollment_id"),
        Enrollment.next_step_id,
        Enrollment.next_due_at,
    )
    .join(SequenceRow, SequenceRow.id == Enrollment.sequence_id)
    .where(
        claimable(),
        Enrollment.next_due_at <= bindparam("at", type_=Enrollment.next_due_at.type),
        # ix_enrollments_claim: (status, next_due_at, id)
        tuple_(Enrollment.next_due_at, Enrollment.id)
        > tuple_(
            bindparam("after_due", type_=Enrollment.next_due_at.type),
            bindparam("after_id", type_=Integer),
        ),
        Enrollment.next_step_id.is_not(None),
        SequenceRow.status == SequenceStatus.ACTIVE,
    )
    .order_by(Enrollment.next_due_at, Enrollment.id)
    .limit(bindparam("limit", type_=Integer))
)


# PostgreSQL's system column for where a row version sits in the table.
_ctid = column("ctid", NullType(), _selectable=Enrollment.__table__)


def _claim_statement() -> Insert:
    """PostgreSQL's claim of one slice, in one statement: pick (another dispatcher skips
    the rows this one holds instead of waiting for them), clear next_due_at (the claim),
    insert the deliveries (one that exists for the step already is left alone and its id
    not returned)."""
    # The row's place (ctid) comes along so the UPDATE finds each row without a second walk
    # of the primary key: the CTE's rows are locked, so no other writer can move them.
    due = (
        _DUE.add_columns(_ctid.label("tid"))
        .with_for_update(of=Enrollment, skip_locked=True)
        .cte("due")
    )
    taken = (
        update(Enrollment)
        # By position through an array: joined to the CTE alone, the planner guesses its
        # size and scans the whole table instead. `= ANY(array)` keeps a plan that serves
        # every slice (an IN list would be planned anew for each length).
        .where(_ctid == any_(func.array(select(due.c.tid).scalar_subquery())))
        .where(Enrollment.id == due.c.id)
        .values(next_due_at=None)
        .returning(Enrollment.id, due.c.next_step_id, due.c.next_due_at)
        .cte("taken")
    )
    at = Delivery.claimed_at.type
    rows = select(
        taken.c.id,
        taken.c.next_step_id,
        literal(DeliveryStatus.QUEUED.value),
        taken.c.next_due_at,
        bindparam("at", type_=at),
        bindparam("lease_until", type_=at),
        literal(0),
    )
    columns = ["enrollment_id", "step_id", "status", "due_at", "claimed_at", "lease_until",
               "attempts"]  # fmt: skip
    return (
        pg_insert(Delivery)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["enrollment_id", "step_id"])
        .returning(Delivery.id, Delivery.due_at.label("next_due_at"), Delivery.enrollment_id)
        # Data-modifying CTEs must stand at the top of the statement.
        .add_cte(due, taken, nest_here=True)
    )


CLAIM = _claim_statement()


def _take(s: Session, ids: list[int]) -> None:
    # Clearing next_due_at is the claim. Conditional and counted: on SQLite (no SKIP LOCKED)
    # this is what tells that another writer got there first.
    taken = s.execute(
        update(Enrollment)
        .where(Enrollment.id.in_(ids), Enrollment.next_due_at.is_not(None))
        .values(next_due_at=None)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != len(ids):  # type: ignore[attr-defined]
        raise RuntimeError("claim raced with another writer; the transaction is rolled back")


def _insert_queued(
    s: Session, rows: Sequence[_DueRow], at: datetime, lease: timedelta
) -> list[int]:
    """A QUEUED delivery per claimed enrollment, leased to `at + lease`; their ids. One that
    exists for the step already is left alone (and its id not returned)."""
    values = [
        {
            "enrollment_id": r.id,
            "step_id": r.next_step_id,
            "status": DeliveryStatus.QUEUED,
            "due_at": r.next_due_at,
            "claimed_at": at,
            "lease_until": at + lease,
            "attempts": 0,
        }
        for r in rows
    ]
    claimed: list[int] = []
    # Multi-row VALUES in slices: each row is 7 parameters, and SQLite allows 32,766 per
    # statement.
    for rows_slice in chunks(values):
        stmt = (
            sqlite_insert(Delivery)
            .values(rows_slice)
            .on_conflict_do_nothing(index_elements=["enrollment_id", "step_id"])
            .returning(Delivery.id)
        )
        claimed.extend(s.scalars(stmt))
    return claimed


def reclaim_expired(s: Session, at: datetime, limit: int, lease: timedelta) -> list[int]:
    """QUEUED deliveries whose lease ran out: their worker died or their message was lost."""
    pick = (
        select(Delivery.id)
        .where(Delivery.status == DeliveryStatus.QUEUED, Delivery.lease_until < at)
        .order_by(Delivery.lease_until)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(s.scalars(pick))
    if ids:
        s.execute(
            update(Delivery)
            .where(and_(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.QUEUED))
            .values(lease_until=at + lease)
            .execution_options(synchronize_session=False)
        )
    return ids


# Claims per transaction: workers start on the first thousand while the next is claimed,
# instead of idling until a whole backlog is claimed.
CLAIM_SLICE = 1000


def dispatch_once(enqueue: Enqueue, *, limit: int = CLAIM_SLICE) -> DispatchResult:
    """One pass: reclaim lost work, claim what is due, then (after commit) enqueue it.

    Enqueueing only after the commit means a worker never receives an id it cannot see,
    and a rolled-back claim never sends anything.
    """
    settings = current().settings
    lease = timedelta(seconds=settings.lease_seconds)
    result = DispatchResult()
    after = START
    while True:
        with transaction() as s:
            at = now()
            reclaimed = reclaim_expired(s, at, limit, lease)
            slice_ = claim_due(s, at, limit, lease, after)
        claimed, after = slice_.ids, slice_.last
        work = reclaimed + claimed
        for batch in chunks(work, settings.batch_size):
            enqueue(batch)
            result.batches += 1
        result.reclaimed += len(reclaimed)
        result.claimed += len(claimed)
        if len(claimed) < limit and len(reclaimed) < limit:
            return result
