"""Sending a batch of claimed deliveries over one mail connection.

For each delivery, in its own transaction: lock it (with its enrollment and subscriber),
re-check that mail is still wanted, send, then mark it SENT and advance the enrollment. The
commit comes only after the server accepted the message, so a crash before it leaves the
delivery QUEUED and its lease brings it back: a step is never lost. The price is that a
crash in the instant between the server's "250 OK" and our commit sends that one message
again; its Message-ID is stable, so mail clients show it once.

What does not need a lock is read once per batch (the rows to render, each sequence's
steps), so the per-message transaction is a locking SELECT, one write (a data-modifying
CTE on PostgreSQL; two UPDATEs on SQLite) and a COMMIT, on one connection held for the
batch (asynchronous commit on PostgreSQL: see _batch_session for what that does and does
not risk).

Before each message the worker takes its turn from the shared limiter (limits.py). A 4xx
defers that one message; a lost connection (a 421, a drop) costs the message one more try
at the end of the batch while the rest goes on over a new connection (_connection_lost).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, contains_eager
from sqlalchemy.sql.elements import ClauseElement

from nurture.clock import now
from nurture.db import get_engine
from nurture.delivery.compose import compose
from nurture.delivery.limits import DailyLimitReached, SendLimiter, get_limiter
from nurture.delivery.links import rewriter_for
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.mail.backends import (
    ConnectionLostError,
    MailBackend,
    PermanentMailError,
    TransientMailError,
    get_backend,
)
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import due_for, is_immediate_first, reader_zone, window_of
from nurture.sequences.services import live_steps, step_after
from nurture.subscribers.leaving import mark_bounced
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.rules import why_not_mail

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
_FAST = "nurture_fast_send"


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


# --- PostgreSQL: two round trips per message instead of four --------------------------
# A batch's connection runs in the driver's autocommit mode (see _batch_session), and the
# per-message transaction is spelled out: "BEGIN; SELECT … FOR UPDATE" goes as one query,
# and so does "UPDATE …; COMMIT". psycopg composes the parameters on the client (with the
# server's quoting rules), which is what lets two statements travel together. The
# transaction is the same one as before; SQLAlchemy's own COMMIT afterwards finds nothing
# open and sends nothing. Every other transaction in the batch starts with _begin().


def _fast(conn: Connection) -> bool:
    return bool(conn.info.get(_FAST))


def _begin(s: Session) -> None:
    conn = s.connection()
    if _fast(conn):
        conn.exec_driver_sql("BEGIN")


@functools.cache
def _pg_sql(stmt: ClauseElement) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(dialect=postgresql_psycopg.dialect())
    return str(compiled), dict(compiled.params)


def _fast_execute(
    conn: Connection,
    stmt: ClauseElement,
    params: dict[str, Any],
    *,
    before: str = "",
    after: str = "",
) -> list[tuple[Any, ...]]:
    sql, defaults = _pg_sql(stmt)
    values = {**defaults, **{k: _plain(v) for k, v in params.items()}}
    text = "; ".join(part for part in (before, sql, after) if part)
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with psycopg.ClientCursor(raw) as cur:
        cur.execute(text, values)
        if before:
            cur.nextset()
        return list(cur.fetchall()) if cur.description else []


def _plain(value: Any) -> Any:
    # Enum members as their text: the driver adapts by exact type.
    return str(value) if isinstance(value, enum.Enum) else value


def _fresh_state(s: Session, d: Delivery) -> tuple[str, str, str, str, bool] | None:
    """Current statuses, locked on PostgreSQL: an unsubscribe either committed before this
    (and we see it) or waits until this send is recorded."""
    conn = s.connection()
    if _fast(conn):
        rows = _fast_execute(conn, _STATE_LOCKED, {"delivery_id": d.id}, before="BEGIN")
        return tuple(rows[0]) if rows else None
    q = _STATE_LOCKED if conn.dialect.name == "postgresql" else _STATE
    row = conn.execute(q, {"delivery_id": d.id}).one_or_none()
    return None if row is None else tuple(row)  # type: ignore[return-value]


def _immediate_first(d: Delivery) -> bool:
    # Only while nothing was sent yet: a first step put back (paused, resumed) is still first.
    return d.enrollment.last_step_id is None and is_immediate_first(
        d.enrollment.sequence, d.step.delay_seconds
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
    # Core, not the ORM: nothing loaded needs synchronising, and the ORM's bookkeeping
    # around a bulk UPDATE costs more than the statement itself.
    conn = s.connection()
    if _fast(conn):
        _fast_execute(conn, _SENT_AND_ADVANCE, values, after="COMMIT")
    elif conn.dialect.name == "postgresql":
        conn.execute(_SENT_AND_ADVANCE, values)
    else:
        conn.execute(_MARK_SENT, values)
        conn.execute(_ADVANCE, values)


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
    tz = reader_zone(e.subscriber.timezone, seq.config.timezone)
    window = window_of(seq)
    if not window.contains(at, tz) and not _immediate_first(d):
        # A backlog that outlives the window waits for the next one: no 3 a.m. emails.
        _put_back(s, d, window.next_open(at, tz))
        result.skipped.append(d.id)
        return
    msg = compose(
        seq,
        d.step,
        public_id=e.subscriber.public_id,
        email=e.subscriber.email,
        first_name=e.subscriber.first_name,
        rewrite=rewriter_for(s, d),
        date=at,
        delivery_id=d.id,
        came_by=e.source,
    )
    backend.send(msg)  # raises on failure; the caller rolls this transaction back
    _record_sent(s, d, steps, at, msg["Message-ID"])
    result.sent.append(d.id)


def _record_failure(
    s: Session, delivery_id: int, exc: Exception, permanent: bool, result: BatchResult
) -> None:
    with s.begin():
        _begin(s)
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


# A batch may open this many extra connections (plus one per five messages): a relay that
# drops us after every few messages is then "this server later", not an endless loop.
MAX_RECONNECTS = 5
# Connection-level refusals among the last messages that mean "this server later".
REFUSALS_WINDOW, REFUSALS_TO_THROTTLE = 10, 3
# Waits before opening a connection again after failing to open one (seconds).
CONNECT_WAITS = (0.5, 2.0)


@dataclass
class _Batch:
    """The state of one batch's walk through its deliveries."""

    s: Session
    backend: MailBackend
    limiter: SendLimiter
    steps: dict[int, list[Step]]
    result: BatchResult
    pending: deque[tuple[int, int, Delivery]]
    max_reconnects: int
    retried: set[int] = field(default_factory=set)
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=REFUSALS_WINDOW))
    connect_failures: int = 0


def send_batch(
    delivery_ids: list[int],
    backend: MailBackend | None = None,
    limiter: SendLimiter | None = None,
) -> BatchResult:
    result = BatchResult()
    backend = backend or get_backend()
    with _batch_session() as s:
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
        batch = _Batch(
            s,
            backend,
            limiter or get_limiter(),
            steps,
            result,
            deque((d.id, d.enrollment.sequence_id, d) for d in deliveries),
            MAX_RECONNECTS + len(deliveries) // 5,
        )
        with backend:
            while batch.pending:
                if not _next(batch):
                    break
    log.info(
        "batch done: %d sent, %d skipped, %d failed, %d deferred",
        len(result.sent),
        len(result.skipped),
        len(result.failed),
        len(result.retry),
    )
    return result


def _next(b: _Batch) -> bool:
    """Send the next pending delivery; False when the rest of the batch must wait."""
    delivery_id, sequence_id, d = b.pending.popleft()
    try:
        b.limiter.acquire()
    except DailyLimitReached as exc:
        # Nothing more today: the rest is due again at midnight UTC (`nurture schedule`).
        _defer_to(b.s, [delivery_id, *(i for i, _, _ in b.pending)], exc.until, b.result)
        b.pending.clear()
        log.info("%s", exc)
        return False
    try:
        with b.s.begin():
            send_one(b.s, b.backend, d, b.steps[sequence_id], b.result)
    except ConnectionLostError as exc:
        return _connection_lost(b, (delivery_id, sequence_id, d), exc)
    except PermanentMailError as exc:
        _record_failure(b.s, delivery_id, exc, True, b.result)
    except TransientMailError as exc:
        # "This message later": the connection stays, the next message goes on.
        if exc.throttle:
            b.limiter.throttle()
        _record_failure(b.s, delivery_id, exc, False, b.result)
    except DBAPIError:
        raise  # the database is gone: leases bring the whole batch back
    except Exception as exc:
        # A bug or bad data in this one message never stops the batch (its text may quote
        # the address: only the type is kept). It counts as an attempt.
        _record_failure(b.s, delivery_id, UnexpectedError(exc), False, b.result)
    b.recent.append(False)
    b.connect_failures = 0
    return True


def _connection_lost(b: _Batch, item: tuple[int, int, Delivery], exc: ConnectionLostError) -> bool:
    """The connection is gone (a 421, a drop) or would not open. The message goes to the
    end of this batch for one more try on a fresh connection, and everything behind it
    goes on at once. Repeated refusals, or a refusal to connect, mean "this server later":
    the whole pipeline slows down (the shared limiter), and a server that will not take a
    connection at all leaves the rest of the batch to its backoff."""
    delivery_id = item[0]
    b.recent.append(True)
    if exc.throttle or sum(b.recent) >= REFUSALS_TO_THROTTLE:
        b.limiter.throttle()
    reconnects = getattr(b.backend, "reconnects", 0)
    if exc.at_connect:
        b.connect_failures += 1
        if b.connect_failures <= len(CONNECT_WAITS):
            time.sleep(CONNECT_WAITS[b.connect_failures - 1])
            b.pending.appendleft(item)  # nothing of it was sent: same place in the line
            return True
    if exc.at_connect or reconnects > b.max_reconnects:
        for i in [delivery_id, *(i for i, _, _ in b.pending)]:
            _record_failure(b.s, i, exc, False, b.result)
        b.pending.clear()
        return False
    if delivery_id in b.retried:
        _record_failure(b.s, delivery_id, exc, False, b.result)
    else:
        b.retried.add(delivery_id)
        b.pending.append(item)
    return True


def _defer_to(s: Session, delivery_ids: list[int], until: datetime, result: BatchResult) -> None:
    """Still queued deliveries give their step back to the enrollment, due at `until`."""
    with s.begin():
        _begin(s)
        for delivery_id in delivery_ids:
            gone = s.execute(
                delete(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.QUEUED)
                .returning(Delivery.enrollment_id, Delivery.step_id)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if gone is None:
                continue
            s.execute(
                update(Enrollment)
                .where(Enrollment.id == gone.enrollment_id)
                .values(next_step_id=gone.step_id, next_due_at=until)
                .execution_options(synchronize_session=False)
            )
            result.skipped.append(delivery_id)


@contextmanager
def _batch_session() -> Iterator[Session]:
    """One database connection for the whole batch (no pool checkout and ping per message).

    On PostgreSQL its commits are asynchronous (synchronous_commit off): the COMMIT returns
    before the WAL reaches the disk. What that costs is bounded: the commit is visible to
    every other session at once and survives any worker crash, SIGKILL included, so the
    "at most one resend per killed worker" promise holds. Only a crash of PostgreSQL
    itself (or the machine) can lose the last few hundred milliseconds of send records
    (wal_writer_delay, at most three times it); those messages are then sent once more
    when their lease runs out, with the same Message-ID. A clean PostgreSQL restart
    flushes everything first and loses nothing.
    """
    engine = get_engine()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        fast = engine.dialect.name == "postgresql" and isinstance(raw, psycopg.Connection)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET synchronous_commit = off")
            conn.commit()
        if fast:
            raw.autocommit = True  # type: ignore[union-attr]
            conn.info[_FAST] = True
        try:
            with Session(bind=conn, expire_on_commit=False) as s:
                yield s
        finally:
            conn.info.pop(_FAST, None)
            if engine.dialect.name == "postgresql" and not conn.invalidated:
                # The connection goes back to the pool: leave nothing behind.
                with contextlib.suppress(DBAPIError, psycopg.Error):
                    conn.rollback()
                    if fast:
                        raw.rollback()  # type: ignore[union-attr]
                        raw.autocommit = False  # type: ignore[union-attr]
                    conn.exec_driver_sql("RESET synchronous_commit")
                    conn.commit()
