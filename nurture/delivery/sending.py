"""Sending a batch of claimed deliveries over one mail connection: the rules. Where their
state lives, and how each message's transaction goes, is the delivery store's
(delivery/store.py).

For each delivery: lock its state, re-check that mail is still wanted, send, then record it
SENT and advance the enrollment. The record commits only after the server accepted the
message, so a crash before it leaves the delivery QUEUED and its lease brings it back: a
step is never lost. The price is that a crash in the instant between the server's "250 OK"
and the commit sends that one message again; its Message-ID is stable, so mail clients show
it once.

Before each message the worker takes its turn from the shared limiter (limits.py). A 4xx
defers that one message; a lost connection (a 421, a drop) costs the message one more try
at the end of the batch while the rest goes on over a new connection (_connection_lost).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import DBAPIError

from nurture.clock import now
from nurture.delivery.compose import compose
from nurture.delivery.limits import DailyLimitReached, SendLimiter, get_limiter
from nurture.delivery.links import rewriter_for
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.store import (
    Advance,
    DeliveryStore,
    Outcome,
    State,
    StoreError,
    Verdict,
)
from nurture.delivery.stores import open_store
from nurture.mail.backends import (
    ConnectionLostError,
    MailBackend,
    PermanentMailError,
    TransientMailError,
    get_backend,
)
from nurture.mail.message import message_id_of
from nurture.sequences.models import SequenceStatus, Step
from nurture.sequences.schedule import due_for, is_immediate_first, reader_zone, window_of
from nurture.sequences.services import step_after
from nurture.subscribers.models import EnrollmentStatus
from nurture.subscribers.rules import why_not_mail

log = logging.getLogger(__name__)


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


def _immediate_first(d: Delivery) -> bool:
    # Only while nothing was sent yet: a first step put back (paused, resumed) is still first.
    return d.enrollment.last_step_id is None and is_immediate_first(
        d.enrollment.sequence, d.step.delay_seconds
    )


def _advance(d: Delivery, steps: list[Step], at: datetime) -> Advance:
    """The enrollment moves past this step, or completes."""
    e = d.enrollment
    nxt = step_after(steps, d.step)
    return Advance(
        enrollment_id=e.id,
        status=EnrollmentStatus.ACTIVE if nxt else EnrollmentStatus.COMPLETED,
        step_id=d.step_id,
        at=at,
        next_step_id=nxt.id if nxt else None,
        next_due_at=(
            due_for(e.sequence, e.subscriber.timezone, at, nxt.delay_seconds) if nxt else None
        ),
        ended_at=None if nxt else at,
    )


def send_one(
    store: DeliveryStore,
    backend: MailBackend,
    d: Delivery,
    steps: list[Step],
    result: BatchResult,
) -> None:
    """One message, in one transaction of the store's: any exception ends it unchanged."""
    state = store.lock(d.id)
    try:
        _decide_and_send(store, backend, d, steps, result, state)
    except BaseException:
        store.release()
        raise


def _decide_and_send(
    store: DeliveryStore,
    backend: MailBackend,
    d: Delivery,
    steps: list[Step],
    result: BatchResult,
    state: State | None,
) -> None:
    if state is None or state.delivery != DeliveryStatus.QUEUED:
        store.release()
        result.skipped.append(d.id)  # already sent, cancelled, or taken by another worker
        return
    why_not = why_not_mail(state.subscriber, state.enrollment, step_removed=state.step_removed)
    if why_not is not None:
        store.cancel(d.id, why_not)
        result.skipped.append(d.id)
        return
    e = d.enrollment
    seq = e.sequence
    # One instant for the window check, the Date header and sent_at, so they cannot disagree.
    at = now()
    if state.sequence == SequenceStatus.PAUSED:
        store.put_back(d.id, e.id, d.step_id, d.due_at)
        result.skipped.append(d.id)
        return
    tz = reader_zone(e.subscriber.timezone, seq.config.timezone)
    window = window_of(seq)
    if not window.contains(at, tz) and not _immediate_first(d):
        # A backlog that outlives the window waits for the next one: no 3 a.m. emails.
        store.put_back(d.id, e.id, d.step_id, window.next_open(at, tz))
        result.skipped.append(d.id)
        return
    msg = compose(
        seq,
        d.step,
        public_id=e.subscriber.public_id,
        email=e.subscriber.email,
        first_name=e.subscriber.first_name,
        rewrite=rewriter_for(d, functools.partial(store.add_link, d.id)),
        date=at,
        delivery_id=d.id,
        came_by=e.source,
    )
    backend.send(msg)  # raises on failure; send_one ends the transaction unchanged
    store.record_sent(d.id, message_id_of(msg), _advance(d, steps, at))
    result.sent.append(d.id)


# A batch may open this many extra connections (plus one per five messages): a relay that
# drops us after every few messages is then "this server later", not an endless loop.
MAX_RECONNECTS = 5
# Tries a message gets within its batch when the connection is lost under it: a relay that
# refuses one message in ten at random refuses the same one twice now and then, and a
# third time rarely; only past these does it wait for its backoff.
TRIES_IN_BATCH = 5
# Connection-level refusals among the last messages that mean "slower, all of you" even
# when their words say nothing of rates: half of them. Refusals at random (one in ten)
# almost never come that thick; a relay that refuses what comes faster than it takes
# refuses nearly everything at our full pace, and less once the pace comes down.
REFUSALS_WINDOW, REFUSALS_TO_THROTTLE = 20, 10
# Waits before opening a connection again after failing to open one (seconds).
CONNECT_WAITS = (0.5, 2.0)


@dataclass
class _Batch:
    """The state of one batch's walk through its deliveries."""

    store: DeliveryStore
    backend: MailBackend
    limiter: SendLimiter
    steps: dict[int, list[Step]]
    result: BatchResult
    pending: deque[Delivery]
    max_connections: int
    tries: Counter[int] = field(default_factory=Counter)
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=REFUSALS_WINDOW))
    connect_failures: int = 0


def send_batch(
    delivery_ids: list[int],
    backend: MailBackend | None = None,
    limiter: SendLimiter | None = None,
) -> BatchResult:
    result = BatchResult()
    backend = backend or get_backend()
    with open_store() as store:
        loaded = store.load(delivery_ids)
        ids = {d.id for d in loaded.deliveries}
        result.skipped.extend(i for i in delivery_ids if i not in ids)
        batch = _Batch(
            store,
            backend,
            limiter or get_limiter(),
            loaded.steps,
            result,
            deque(loaded.deliveries),
            MAX_RECONNECTS + len(loaded.deliveries) // 5,
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


def _fail(b: _Batch, delivery_id: int, exc: Exception, verdict: Verdict) -> None:
    outcome = b.store.record_failure(delivery_id, str(exc), verdict)
    if outcome is Outcome.GONE:
        return
    (b.result.retry if outcome is Outcome.RETRY else b.result.failed).append(delivery_id)
    what = "deferred" if verdict is Verdict.LATER else "failed"
    log.warning("delivery %s %s: %s", delivery_id, what, exc)


def _next(b: _Batch) -> bool:
    """Send the next pending delivery; False when the rest of the batch must wait."""
    d = b.pending.popleft()
    try:
        b.limiter.acquire()
    except DailyLimitReached as exc:
        # Nothing more today: the rest is due again at midnight UTC (`nurture schedule`).
        b.result.skipped.extend(b.store.defer([d.id, *(p.id for p in b.pending)], exc.until))
        b.pending.clear()
        log.info("%s", exc)
        return False
    try:
        send_one(b.store, b.backend, d, b.steps[d.enrollment.sequence_id], b.result)
    except ConnectionLostError as exc:
        return _connection_lost(b, d, exc)
    except PermanentMailError as exc:
        _fail(b, d.id, exc, Verdict.BOUNCED if exc.bounce else Verdict.FAILED)
    except TransientMailError as exc:
        # "This message later": the connection stays, the next message goes on.
        if exc.throttle:
            b.limiter.throttle()
        _fail(b, d.id, exc, Verdict.LATER)
    except (StoreError, DBAPIError):
        raise  # the database is gone: leases bring the whole batch back
    except Exception as exc:
        # A bug or bad data in this one message never stops the batch (its text may quote
        # the address: only the type is kept). It counts as an attempt.
        _fail(b, d.id, UnexpectedError(exc), Verdict.LATER)
    b.recent.append(False)
    b.connect_failures = 0
    return True


def _connection_lost(b: _Batch, d: Delivery, exc: ConnectionLostError) -> bool:
    """The connection is gone (a 421, a drop) or would not open. The message goes to the
    end of this batch for another try on a fresh connection, and everything behind it goes
    on at once: one refusal costs a reconnect, not anyone's pace. A refusal that speaks of
    rates, or refusals as thick as a relay pushed past its pace answers with, slow the
    whole pipeline down (the shared limiter); a relay that keeps dropping us, or will not
    take a connection at all, leaves the rest of the batch to its backoff."""
    b.recent.append(True)
    if exc.throttle or sum(b.recent) >= REFUSALS_TO_THROTTLE:
        b.limiter.throttle()
    if exc.at_connect:
        b.connect_failures += 1
        if b.connect_failures <= len(CONNECT_WAITS):
            time.sleep(CONNECT_WAITS[b.connect_failures - 1])
            b.pending.appendleft(d)  # nothing of it was sent: same place in the line
            return True
    if exc.at_connect or b.backend.connections > b.max_connections:
        for pending in [d, *b.pending]:
            _fail(b, pending.id, exc, Verdict.LATER)
        b.pending.clear()
        return False
    b.tries[d.id] += 1
    if b.tries[d.id] >= TRIES_IN_BATCH:
        _fail(b, d.id, exc, Verdict.LATER)
    else:
        b.pending.append(d)
    return True
