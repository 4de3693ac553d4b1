"""Delivering event webhooks (NURTURE_EVENTS_URL, NURTURE_EVENTS_SECRET); recording them:
events/outbox.py.

1. Sweeping. Beat starts `sweep` every dispatch interval: it claims due outbox rows the way
   dispatch claims due sends (SKIP LOCKED on PostgreSQL, a conditional UPDATE on SQLite) and
   hands their ids to workers after the commit.
2. Delivering. A worker POSTs each body signed as the Standard Webhooks spec says
   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
   "id.timestamp.body">`). A 2xx answer delivers it; anything else (3xx included, a timeout,
   a refused connection) is retried on the spec's schedule: 5 s, 5 min, 30 min, 2 h, 5 h,
   10 h, 10 h, then it is marked failed, 27.6 hours after the first attempt.

Logs carry outbox ids and event types, never addresses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import transaction
from nurture.events.models import OutboxEvent, OutboxStatus
from nurture.events.outbox import open_body

log = logging.getLogger(__name__)

# After the first attempt; the Standard Webhooks spec's suggested schedule (27.6 h in all).
RETRY_AFTER = tuple(timedelta(seconds=n) for n in (5, 300, 1800, 7200, 18000, 36000, 36000))
TIMEOUT_SECONDS = 10
BATCH = 20


# --- sweeping ------------------------------------------------------------------------


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


# --- delivering ----------------------------------------------------------------------


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
            body = open_body(row) if row is not None else None
            if row is None or row.status != OutboxStatus.PENDING or body is None:
                continue
            msg_id = row.msg_id
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
