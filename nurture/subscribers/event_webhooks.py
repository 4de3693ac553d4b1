"""Event webhooks for the practice's own systems (NURTURE_EVENTS_URL, NURTURE_EVENTS_SECRET).

How an event gets out:

1. Recording. Every change worth announcing already records an `Event` row (confirmed,
   unsubscribed, booked, bounced, complained, replied, forgotten). A `before_flush` hook on
   every session (`capture`, installed by nurture.db) turns each new such row into an
   `event_outbox` row in the same flush, so in the same transaction: a rolled-back change
   announces nothing, a committed one is never lost. New code that records one of these
   kinds, through `record_event()` or a plain `Event(...)`, is announced without extra wiring.
2. Sweeping. Beat starts `sweep` every dispatch interval: it claims due outbox rows the way
   dispatch claims due sends (SKIP LOCKED on PostgreSQL, a conditional UPDATE on SQLite) and
   hands their ids to workers after the commit.
3. Delivering. A worker POSTs each body signed as the Standard Webhooks spec says
   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
   "id.timestamp.body">`). A 2xx answer delivers it; anything else (3xx included, a timeout,
   a refused connection) is retried on the spec's schedule: 5 s, 5 min, 30 min, 2 h, 5 h,
   10 h, 10 h, then it is marked failed, 27.6 hours after the first attempt.

The body names the person (that is its purpose: the practice's CRM must be told who left).
It lives in the outbox only until it is delivered or given up on, then it is erased. Logs
carry outbox ids and event types, never addresses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import transaction
from nurture.sequences.models import Sequence
from nurture.subscribers.models import Event, OutboxEvent, OutboxStatus, Subscriber

log = logging.getLogger(__name__)

# Event kinds (as recorded in `events`) announced to the practice, as contract types.
KINDS = ("confirmed", "unsubscribed", "booked", "bounced", "complained", "replied", "forgotten")
# After the first attempt; the Standard Webhooks spec's suggested schedule (27.6 h in all).
RETRY_AFTER = tuple(timedelta(seconds=n) for n in (5, 300, 1800, 7200, 18000, 36000, 36000))
TIMEOUT_SECONDS = 10
BATCH = 20


def event_type(kind: str) -> str:
    return f"subscriber.{kind}"


def body_for(kind: str, email: str, sequence: str | None, at: datetime) -> str:
    payload = {
        "type": event_type(kind),
        "timestamp": at.isoformat(),
        "data": {"email": email, "sequence": sequence},
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def new_row(kind: str, body: str, at: datetime) -> dict[str, Any]:
    return {
        "msg_id": f"msg_{uuid.uuid4().hex}",
        "type": event_type(kind),
        "body": body,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


# --- 1. recording -----------------------------------------------------------------------


def capture(session: Session, _flush_context: object, _instances: object) -> None:
    """before_flush: an outbox row for every new Event of an announced kind."""
    new = [o for o in session.new if isinstance(o, Event) and o.kind in KINDS]
    if not new or not current().settings.events_url:
        return
    at = now()
    for ev in new:  # in the order they were added to the session
        sub = session.get(Subscriber, ev.subscriber_id) if ev.subscriber_id else None
        if sub is None:
            # Nobody to name (e.g. an event recorded after the person was erased).
            log.warning("event %s has no subscriber; not announced", ev.kind)
            continue
        body = body_for(ev.kind, sub.email, _sequence_slug(session, ev, sub), at)
        session.add(OutboxEvent(**new_row(ev.kind, body, at)))


def _sequence_slug(session: Session, ev: Event, sub: Subscriber) -> str | None:
    """The event's own sequence, else the person's latest one (an unsubscribe or a booking
    belongs to the person, who is usually in one sequence)."""
    if ev.sequence_id is not None:
        seq = session.get(Sequence, ev.sequence_id)
        return seq.slug if seq else None
    latest = max(sub.enrollments, key=lambda e: e.id or 0, default=None)
    return latest.sequence.slug if latest is not None else None


def queue_many(s: Session, kind: str, people: Iterable[tuple[str, str | None]]) -> int:
    """Outbox rows for events written in bulk (Core inserts skip the flush hook): each of
    `people` is (email, sequence slug)."""
    if not current().settings.events_url:
        return 0
    at = now()
    rows = [new_row(kind, body_for(kind, email, slug, at), at) for email, slug in people]
    for i in range(0, len(rows), 1000):
        s.execute(insert(OutboxEvent), rows[i : i + 1000])
    return len(rows)


# --- 2. sweeping ------------------------------------------------------------------------


def claim_due(s: Session, at: datetime, limit: int, lease: timedelta) -> list[int]:
    pick = (
        select(OutboxEvent.id)
        .where(OutboxEvent.status == OutboxStatus.PENDING, OutboxEvent.next_attempt_at <= at)
        .order_by(OutboxEvent.next_attempt_at, OutboxEvent.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(s.scalars(pick))
    if not ids:
        return []
    # The lease: not due again until the worker had ample time to try.
    taken = s.execute(
        update(OutboxEvent)
        .where(
            OutboxEvent.id.in_(ids),
            OutboxEvent.status == OutboxStatus.PENDING,
            OutboxEvent.next_attempt_at <= at,
        )
        .values(next_attempt_at=at + lease)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != len(ids):  # type: ignore[attr-defined]
        raise RuntimeError("outbox claim raced with another writer; rolled back")
    return ids


def sweep(enqueue: Callable[[list[int]], None], *, limit: int = 1000) -> int:
    """One pass: claim due outbox rows, then (after the commit) hand them to workers."""
    if current().settings.events_key is None:
        return 0
    lease = timedelta(seconds=current().settings.lease_seconds)
    with transaction() as s:
        ids = claim_due(s, now(), limit, lease)
    for i in range(0, len(ids), BATCH):
        enqueue(ids[i : i + BATCH])
    return len(ids)


# --- 3. delivering ----------------------------------------------------------------------


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is not a 2xx: following it would re-send the signed body somewhere else.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, key: bytes, msg_id: str, body: str) -> str | None:
    """POST one event; None on a 2xx answer, else a short reason (no URL, no body)."""
    # The signing time is the real time of this attempt, whatever clock nurture runs on:
    # receivers refuse timestamps more than five minutes off their own clock.
    timestamp = int(time.time())
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "nurture-webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body),
        },
    )
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        return f"no answer ({type(exc).__name__})"
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver(ids: list[int]) -> dict[str, int]:
    """Try each outbox row once. The HTTP call runs outside any transaction."""
    settings = current().settings
    key, url = settings.events_key, settings.events_url
    counts = {"delivered": 0, "retry": 0, "failed": 0}
    if key is None or url is None:
        return counts
    for outbox_id in ids:
        with transaction() as s:
            row = s.get(OutboxEvent, outbox_id)
            if row is None or row.status != OutboxStatus.PENDING or row.body is None:
                continue
            msg_id, body = row.msg_id, row.body
        error = post(url, key, msg_id, body)
        with transaction() as s:
            outcome = _record_attempt(s, outbox_id, error)
        counts[outcome] += 1
    return counts


def _record_attempt(s: Session, outbox_id: int, error: str | None) -> str:
    row = s.get_one(OutboxEvent, outbox_id)
    at = now()
    row.attempts += 1
    if error is None:
        row.status, row.delivered_at = OutboxStatus.DELIVERED, at
        row.next_attempt_at, row.body, row.last_error = None, None, None
        log.info("event %s (%s) delivered", row.id, row.type)
        return "delivered"
    row.last_error = error
    if row.attempts > len(RETRY_AFTER):
        row.status, row.next_attempt_at, row.body = OutboxStatus.FAILED, None, None
        log.warning("event %s (%s) failed for good: %s", row.id, row.type, error)
        return "failed"
    row.next_attempt_at = at + RETRY_AFTER[row.attempts - 1]
    log.info("event %s (%s) refused (%s); retry %d", row.id, row.type, error, row.attempts)
    return "retry"


# --- the operator's view ----------------------------------------------------------------


def list_events(s: Session, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first; no bodies (they name people), just what happened to each."""
    q = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
    if status:
        q = q.where(OutboxEvent.status == status)
    return [
        {
            "id": row.id,
            "webhook_id": row.msg_id,
            "type": row.type,
            "status": row.status,
            "attempts": row.attempts,
            "created_at": row.created_at.isoformat(),
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "error": row.last_error,
        }
        for row in s.scalars(q)
    ]
