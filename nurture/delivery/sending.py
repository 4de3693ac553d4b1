"""Sending a batch of claimed deliveries over one mail connection.

For each delivery, in its own transaction: lock it (with its enrollment and subscriber),
re-check that mail is still wanted, send, then mark it SENT and advance the enrollment. The
commit comes only after the server accepted the message, so a crash before it leaves the
delivery QUEUED and its lease brings it back: a step is never lost. The price is that a
crash in the instant between the server's "250 OK" and our commit sends that one message
again; its Message-ID is stable, so mail clients show it once.

What does not need a lock is read once per batch (the rows to render, each sequence's
steps), so the per-message transaction is a locking SELECT, one write (a data-modifying
CTE on PostgreSQL; two UPDATEs on SQLite) and a COMMIT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session, contains_eager

from nurture.clock import now
from nurture.db import session
from nurture.delivery.compose import compose
from nurture.delivery.links import rewriter_for
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.mail.backends import MailBackend, PermanentMailError, TransientMailError, get_backend
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import zone
from nurture.sequences.services import (
    due_for,
    first_step_immediately,
    live_steps,
    step_after,
    window_of,
)
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.rules import why_not_mail
from nurture.subscribers.services import mark_bounced

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


@dataclass
class BatchResult:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # cancelled or put back for later
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # transient failure: the lease brings it back


class UnexpectedError(Exception):
    """Anything but a mail error while sending one message, reduced to its type."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"unexpected {type(exc).__name__} while building or sending")


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def _load(s: Session, ids: list[int]) -> list[Delivery]:
    q = (
        select(Delivery)
        .join(Delivery.enrollment)
        .join(Enrollment.subscriber)
        .join(Enrollment.sequence)
        .join(Delivery.step)
        .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.QUEUED)
        .options(
            contains_eager(Delivery.enrollment).contains_eager(Enrollment.subscriber),
            contains_eager(Delivery.enrollment).contains_eager(Enrollment.sequence),
            contains_eager(Delivery.step),
        )
        .order_by(Delivery.id)
    )
    return list(s.scalars(q).unique())


# The per-message statements are built once: at hundreds of messages a second, building
# SQLAlchemy constructs per call costs more than executing them.
_STATE = (
    select(Delivery.status, Enrollment.status, Subscriber.status, Sequence.status,
           Step.removed_at.is_not(None))
    .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
    .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
    .join(Sequence, Sequence.id == Enrollment.sequence_id)
    .join(Step, Step.id == Delivery.step_id)
    .where(Delivery.id == bindparam("delivery_id"))
)  # fmt: skip
# Lock the rows an unsubscribe or a booking would change (SQLite has no row locks; there
# every transaction already holds the database's single write lock).
_STATE_LOCKED = _STATE.with_for_update(of=[Delivery, Enrollment, Subscriber])
_NO_SYNC = {"synchronize_session": False}
_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("delivery_id"))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("at"),
        message_id=bindparam("message_id"),
        attempts=Delivery.attempts + 1,
        error=None,
    )
)
_ADVANCE = (
    update(Enrollment)
    .where(Enrollment.id == bindparam("e_id"))
    .values(
        status=bindparam("e_status"),
        last_step_id=bindparam("e_last_step"),
        last_sent_at=bindparam("at"),
        next_step_id=bindparam("e_next_step"),
        next_due_at=bindparam("e_next_due"),
        ended_at=bindparam("e_ended"),
    )
)

# On PostgreSQL both writes go in one statement (a data-modifying CTE): one round trip less
# per message, inside the same transaction.
_SENT = _MARK_SENT.returning(Delivery.enrollment_id).cte("sent")
_SENT_AND_ADVANCE = _ADVANCE.where(Enrollment.id == select(_SENT.c.enrollment_id).scalar_subquery())


def _fresh_state(s: Session, d: Delivery) -> tuple[str, str, str, str, bool] | None:
    """Current statuses, locked on PostgreSQL: an unsubscribe either committed before this
    (and we see it) or waits until this send is recorded."""
    q = _STATE_LOCKED if s.get_bind().dialect.name == "postgresql" else _STATE
    row = s.execute(q, {"delivery_id": d.id}).one_or_none()
    return None if row is None else tuple(row)  # type: ignore[return-value]


def _immediate_first(d: Delivery) -> bool:
    return (
        d.enrollment.last_step_id is None
        and d.step.delay_seconds == 0
        and first_step_immediately(d.enrollment.sequence)
    )


def _put_back(s: Session, d: Delivery, due: datetime) -> None:
    """Not now, but later: the step stays due for this enrollment (paused or out of window).
    The delivery row goes so the step can be claimed again under the unique key."""
    s.execute(
        update(Enrollment)
        .where(Enrollment.id == d.enrollment_id)
        .values(next_step_id=d.step_id, next_due_at=due)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        delete(Delivery).where(Delivery.id == d.id).execution_options(synchronize_session=False)
    )


def _advance_values(d: Delivery, steps: list[Step], at: datetime) -> dict[str, object]:
    """Parameters of _ADVANCE: the enrollment moves past this step, or completes."""
    e = d.enrollment
    nxt = step_after(steps, d.step)
    # Prefixed names: an execute() parameter named like a column of the table an UPDATE
    # targets overrides that column's value (or adds a SET clause), and the CTE below
    # updates deliveries, whose columns include "status" and "enrollment_id".
    return {
        "e_id": e.id,
        "e_status": EnrollmentStatus.ACTIVE if nxt else EnrollmentStatus.COMPLETED,
        "e_last_step": d.step_id,
        "at": at,
        "e_next_step": nxt.id if nxt else None,
        "e_next_due": (
            due_for(e.sequence, e.subscriber.timezone, at, nxt.delay_seconds) if nxt else None
        ),
        "e_ended": None if nxt else at,
    }


def _record_sent(s: Session, d: Delivery, steps: list[Step], at: datetime, message_id: str) -> None:
    values = {"delivery_id": d.id, "message_id": message_id, **_advance_values(d, steps, at)}
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_SENT_AND_ADVANCE, values, execution_options=_NO_SYNC)
    else:
        s.execute(_MARK_SENT, values, execution_options=_NO_SYNC)
        s.execute(_ADVANCE, values, execution_options=_NO_SYNC)


def send_one(
    s: Session, backend: MailBackend, d: Delivery, steps: list[Step], result: BatchResult
) -> None:
    state = _fresh_state(s, d)
    if state is None or state[0] != DeliveryStatus.QUEUED:
        result.skipped.append(d.id)  # already sent, cancelled, or taken by another worker
        return
    _, enrollment_status, subscriber_status, sequence_status, step_removed = state
    why_not = why_not_mail(subscriber_status, enrollment_status, step_removed=step_removed)
    if why_not is not None:
        s.execute(
            update(Delivery)
            .where(Delivery.id == d.id)
            .values(status=DeliveryStatus.CANCELLED, error=why_not)
            .execution_options(synchronize_session=False)
        )
        result.skipped.append(d.id)
        return
    e = d.enrollment
    seq = e.sequence
    # One instant for the window check, the Date header and sent_at, so they cannot disagree.
    at = now()
    if sequence_status == SequenceStatus.PAUSED:
        _put_back(s, d, d.due_at)
        result.skipped.append(d.id)
        return
    tz = zone(e.subscriber.timezone, seq.config.timezone)
    window = window_of(seq)
    if not window.contains(at, tz) and not _immediate_first(d):
        # A backlog that outlives the window waits for the next one: no 3 a.m. emails.
        _put_back(s, d, window.next_open(at, tz))
        result.skipped.append(d.id)
        return
    msg = compose(
        seq,
        d.step,
        subscriber_id=e.subscriber.id,
        email=e.subscriber.email,
        first_name=e.subscriber.first_name,
        rewrite=rewriter_for(s, d),
        date=at,
        came_by=e.source,
    )
    backend.send(msg)  # raises on failure; the caller rolls this transaction back
    _record_sent(s, d, steps, at, msg["Message-ID"])
    result.sent.append(d.id)


def _record_failure(
    s: Session, delivery_id: int, exc: Exception, permanent: bool, result: BatchResult
) -> None:
    with s.begin():
        d = s.get(Delivery, delivery_id, populate_existing=True)
        if d is None or d.status != DeliveryStatus.QUEUED:
            return
        d.attempts += 1
        d.error = str(exc)[:500]
        if permanent or d.attempts >= MAX_ATTEMPTS:
            d.status = DeliveryStatus.FAILED
            if isinstance(exc, PermanentMailError) and exc.bounce:
                sub = s.get(Subscriber, d.enrollment.subscriber_id, populate_existing=True)
                assert sub is not None
                mark_bounced(s, sub, str(exc))
            result.failed.append(delivery_id)
        else:
            d.lease_until = now() + backoff(d.attempts)
            result.retry.append(delivery_id)
    log.warning("delivery %s %s: %s", delivery_id, "failed" if permanent else "deferred", exc)


def send_batch(delivery_ids: list[int], backend: MailBackend | None = None) -> BatchResult:
    result = BatchResult()
    backend = backend or get_backend()
    with session() as s:
        with s.begin():
            deliveries = _load(s, delivery_ids)
            steps = {
                seq_id: live_steps(s, seq_id)
                for seq_id in {d.enrollment.sequence_id for d in deliveries}
            }
        loaded = {d.id for d in deliveries}
        result.skipped.extend(i for i in delivery_ids if i not in loaded)
        # Ids kept apart: a rolled-back send expires the loaded objects, and touching one
        # outside a transaction would start one behind our back.
        pending = [(d.id, d.enrollment.sequence_id, d) for d in deliveries]
        try:
            with backend:
                while pending:
                    delivery_id, sequence_id, d = pending[0]
                    try:
                        with s.begin():
                            send_one(s, backend, d, steps[sequence_id], result)
                    except PermanentMailError as exc:
                        _record_failure(s, delivery_id, exc, True, result)
                    except TransientMailError as exc:
                        _record_failure(s, delivery_id, exc, False, result)
                    except Exception as exc:
                        # A bug or bad data in this one message (its text may quote the
                        # address: only the type is kept). It counts as an attempt.
                        _record_failure(s, delivery_id, UnexpectedError(exc), False, result)
                    pending.pop(0)
        except TransientMailError as exc:
            # No connection at all: every unsent delivery waits for its backoff.
            for delivery_id, _, _ in pending:
                _record_failure(s, delivery_id, exc, False, result)
    log.info(
        "batch done: %d sent, %d skipped, %d failed, %d deferred",
        len(result.sent),
        len(result.skipped),
        len(result.failed),
        len(result.retry),
    )
    return result
