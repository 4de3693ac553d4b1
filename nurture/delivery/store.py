"""Where the send loop keeps its state: one delivery store per database (store_postgres.py,
store_sqlite.py) behind the small interface below, so delivery/sending.py holds only the
rules.

Each message is one transaction on the batch's own connection. `lock` begins it and reads
the statuses under lock: an unsubscribe or a booking either committed before (and the lock
sees it) or waits until the message is recorded. Exactly one of `record_sent`, `cancel`,
`put_back` or `release` then ends it. The commit of a sent message comes only after the
server accepted it, so a crash before it leaves the delivery QUEUED and its lease brings it
back: a step is never lost (and a crash in the instant between "250 OK" and the commit
sends that one message again, with the same Message-ID).

Loading a batch, recording a failure and deferring the rest of a batch are rare next to the
per-message work and run in transactions of their own (nurture.db), always after the
message's transaction has ended: they never wait for a lock the batch itself holds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import contains_eager, selectinload

from nurture.clock import now
from nurture.db import chunks, reading, transaction
from nurture.delivery.models import Delivery, DeliveryStatus, Link
from nurture.delivery.retry import next_try
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.services import live_steps
from nurture.subscribers.leaving import mark_bounced
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus


class StoreError(Exception):
    """The database failed under the batch (it restarted, the connection dropped): the
    batch stops and the leases bring its deliveries back."""


class Verdict(enum.Enum):
    """What a failed send means for its delivery."""

    LATER = "later"  # a passing failure: try again after a backoff (retry.next_try)
    FAILED = "failed"  # never this message; the reader's address is fine
    BOUNCED = "bounced"  # never: the address is bad, and the reader is marked bounced


class Outcome(enum.Enum):
    """What recording a failure did."""

    RETRY = "retry"  # still QUEUED, leased until its next try
    FAILED = "failed"
    GONE = "gone"  # no longer queued (sent, cancelled, taken by someone else): untouched


@dataclass(frozen=True, slots=True)
class State:
    """A claimed delivery's statuses as they are now, read under lock."""

    delivery: DeliveryStatus
    enrollment: EnrollmentStatus
    subscriber: SubscriberStatus
    sequence: SequenceStatus
    step_removed: bool

    @classmethod
    def of(cls, row: Any) -> State:
        # The PostgreSQL store reads plain strings: the enums make both stores' answer one.
        delivery, enrollment, subscriber, sequence, removed = row
        return cls(
            DeliveryStatus(delivery),
            EnrollmentStatus(enrollment),
            SubscriberStatus(subscriber),
            SequenceStatus(sequence),
            bool(removed),
        )


@dataclass(frozen=True, slots=True)
class Advance:
    """Where an enrollment goes once a step is sent: its next step, or completed."""

    enrollment_id: int
    status: EnrollmentStatus
    step_id: int
    at: datetime
    next_step_id: int | None
    next_due_at: datetime | None
    ended_at: datetime | None


@dataclass
class Loaded:
    deliveries: list[Delivery]  # still QUEUED, in id order, with enrollment/subscriber/step
    steps: dict[int, list[Step]]  # each of their sequences' live steps


class DeliveryStore(Protocol):
    """The send loop's whole use of the database (see the module)."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def load(self, delivery_ids: list[int]) -> Loaded: ...

    def lock(self, delivery_id: int) -> State | None:
        """Begin the message's transaction: its statuses under lock, None if it is gone."""

    def add_link(self, delivery_id: int, url: str, is_consult: bool) -> int:
        """A tracked link of the message being built, inside its transaction: its id."""

    def record_sent(self, delivery_id: int, message_id: str, advance: Advance) -> None:
        """Mark it SENT and advance the enrollment; commit."""

    def cancel(self, delivery_id: int, why: str) -> None:
        """Mail is no longer wanted: CANCELLED with the reason; commit."""

    def put_back(self, delivery_id: int, enrollment_id: int, step_id: int, due: datetime) -> None:
        """Not now but at `due`: the step is due again for the enrollment and the delivery
        row goes (so the step can be claimed again under the unique key); commit."""

    def release(self) -> None:
        """End the message's transaction, changing nothing (the send failed)."""

    def record_failure(self, delivery_id: int, error: str, verdict: Verdict) -> Outcome:
        """Count a failed attempt (in a transaction of its own)."""

    def defer(self, delivery_ids: list[int], until: datetime) -> list[int]:
        """Still queued deliveries give their step back to the enrollment, due at `until`:
        the ids that did."""


# --- the statements both stores run ----------------------------------------------------
# Built once: at hundreds of messages a second, building SQLAlchemy constructs per call
# costs more than executing them. Parameter names are prefixed: a parameter named like a
# column of the table an UPDATE targets would override that column's value.

STATE = (
    select(Delivery.status, Enrollment.status, Subscriber.status, Sequence.status,
           Step.removed_at.is_not(None))
    .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
    .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
    .join(Sequence, Sequence.id == Enrollment.sequence_id)
    .join(Step, Step.id == Delivery.step_id)
    .where(Delivery.id == bindparam("d_id"))
)  # fmt: skip
# The rows this message's record changes, in the mode an UPDATE of them takes. Whatever
# stops a reader's mail ends their enrollments in its own transaction (an unsubscribe, a
# bounce, a complaint, a booking; forgetting them deletes the enrollments), so it waits on
# this lock and commits after the record, or commits first and is seen here: the person's
# row needs no lock of its own (a row lock is a write of that row's page).
STATE_LOCKED = STATE.with_for_update(of=[Delivery, Enrollment], key_share=True)

MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("d_id"))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("e_at"),
        message_id=bindparam("d_message_id"),
        attempts=Delivery.attempts + 1,
        error=None,
    )
)
ADVANCE = (
    update(Enrollment)
    .where(Enrollment.id == bindparam("e_id"))
    .values(
        status=bindparam("e_status"),
        last_step_id=bindparam("e_last_step"),
        last_sent_at=bindparam("e_at"),
        next_step_id=bindparam("e_next_step"),
        next_due_at=bindparam("e_next_due"),
        ended_at=bindparam("e_ended"),
    )
)
CANCEL = (
    update(Delivery)
    .where(Delivery.id == bindparam("d_id"))
    .values(status=DeliveryStatus.CANCELLED, error=bindparam("d_error"))
)
GIVE_BACK = (
    update(Enrollment)
    .where(Enrollment.id == bindparam("e_id"))
    .values(next_step_id=bindparam("e_next_step"), next_due_at=bindparam("e_next_due"))
)
DROP = delete(Delivery).where(Delivery.id == bindparam("d_id"))
ADD_LINK = (
    insert(Link)
    .values(
        delivery_id=bindparam("l_delivery"),
        url=bindparam("l_url"),
        is_consult=bindparam("l_consult"),
        created_at=bindparam("l_at"),
    )
    .returning(Link.id)
)


def sent_params(delivery_id: int, message_id: str, a: Advance) -> dict[str, Any]:
    return {
        "d_id": delivery_id,
        "d_message_id": message_id,
        "e_id": a.enrollment_id,
        "e_status": a.status,
        "e_last_step": a.step_id,
        "e_at": a.at,
        "e_next_step": a.next_step_id,
        "e_next_due": a.next_due_at,
        "e_ended": a.ended_at,
    }


def put_back_params(
    delivery_id: int, enrollment_id: int, step_id: int, due: datetime
) -> dict[str, Any]:
    return {"d_id": delivery_id, "e_id": enrollment_id, "e_next_step": step_id, "e_next_due": due}


def link_params(delivery_id: int, url: str, is_consult: bool) -> dict[str, Any]:
    return {"l_delivery": delivery_id, "l_url": url, "l_consult": is_consult, "l_at": now()}


class SessionWork:
    """What both stores do in transactions of their own, through the ORM."""

    def load(self, delivery_ids: list[int]) -> Loaded:
        q = (
            select(Delivery)
            .join(Delivery.enrollment)
            .join(Enrollment.subscriber)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.QUEUED)
            .options(
                contains_eager(Delivery.enrollment).contains_eager(Enrollment.subscriber),
                # A batch has a few sequences and steps: each is read once, in a query of
                # its own, not once per delivery in the join (decoding the sequence's
                # settings for every row was a twelfth of a message's time).
                contains_eager(Delivery.enrollment).selectinload(Enrollment.sequence),
                selectinload(Delivery.step),
            )
            .order_by(Delivery.id)
        )
        # What needs no lock is read once per batch; the lock comes per message.
        with reading() as s:
            deliveries = list(s.scalars(q).unique())
            sequences = {d.enrollment.sequence_id for d in deliveries}
            steps = {seq_id: live_steps(s, seq_id) for seq_id in sequences}
            s.expunge_all()  # kept as read: the reading transaction's end would expire them
        return Loaded(deliveries, steps)

    def record_failure(self, delivery_id: int, error: str, verdict: Verdict) -> Outcome:
        with transaction() as s:
            d = s.get(Delivery, delivery_id, populate_existing=True)
            if d is None or d.status != DeliveryStatus.QUEUED:
                return Outcome.GONE
            d.attempts += 1
            d.error = error[:500]
            again = next_try(d.attempts, now()) if verdict is Verdict.LATER else None
            if again is not None:
                d.lease_until = again
                return Outcome.RETRY
            d.status = DeliveryStatus.FAILED
            if verdict is Verdict.BOUNCED:
                sub = s.get(Subscriber, d.enrollment.subscriber_id, populate_existing=True)
                assert sub is not None
                mark_bounced(s, sub, error)
            return Outcome.FAILED

    def defer(self, delivery_ids: list[int], until: datetime) -> list[int]:
        deferred: list[int] = []
        with transaction() as s:
            for chunk in chunks(delivery_ids):
                gone = s.execute(
                    delete(Delivery)
                    .where(Delivery.id.in_(chunk), Delivery.status == DeliveryStatus.QUEUED)
                    .returning(Delivery.id, Delivery.enrollment_id, Delivery.step_id)
                    .execution_options(synchronize_session=False)
                ).all()
                if not gone:
                    continue
                s.connection().execute(
                    GIVE_BACK,
                    [{"e_id": g.enrollment_id, "e_next_step": g.step_id, "e_next_due": until}
                     for g in gone],
                )  # fmt: skip
                deferred.extend(g.id for g in gone)
        return sorted(deferred)
