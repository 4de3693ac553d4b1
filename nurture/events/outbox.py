"""Recording an event webhook: the outbox row written with the change it announces.

Every change worth announcing already records an `Event` row (confirmed, unsubscribed,
booked, bounced, complained, replied, forgotten, took a break). A `before_flush` hook on every
session (`capture`, installed by nurture.runtime) turns each new such row into an
`event_outbox` row in the same flush, so in the same transaction: a rolled-back change
announces nothing, a committed one is never lost. New code that records one of these kinds,
through `record_event()` or a plain `Event(...)`, is announced without extra wiring.

The body names the person (that is its purpose: the practice's CRM must be told who left),
so it is sealed under the data key, bound to its row's webhook id, and opened only by the
worker that posts it (events/webhooks.py). It is erased once delivered or given up on.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.context import current
from nurture.db import chunks
from nurture.events.models import Event, EventKind, OutboxEvent, OutboxStatus
from nurture.sequences.models import Sequence
from nurture.subscribers.models import Subscriber

log = logging.getLogger(__name__)

# Event kinds (as recorded in `events`) announced to the practice, as contract types.
KINDS = (
    EventKind.CONFIRMED,
    EventKind.UNSUBSCRIBED,
    EventKind.BOOKED,
    EventKind.BOUNCED,
    EventKind.COMPLAINED,
    EventKind.REPLIED,
    EventKind.FORGOTTEN,
    EventKind.TOOK_BREAK,
)
# The contract names a reader's break `subscriber.paused`: they paused their own emails. An
# operator's or a reply's pause (EventKind.PAUSED) is not announced.
_TYPE_WORD: dict[str, str] = {EventKind.TOOK_BREAK: "paused"}


def event_type(kind: str) -> str:
    return f"subscriber.{_TYPE_WORD.get(kind, kind)}"


def body_place(msg_id: str) -> str:
    return f"event_outbox.body:{msg_id}"


def body_for(kind: str, email: str, sequence: str | None, at: datetime) -> str:
    payload = {
        "type": event_type(kind),
        "timestamp": at.isoformat(),
        "data": {"email": email, "sequence": sequence},
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def new_row(kind: str, body: str, at: datetime) -> dict[str, Any]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    return {
        "msg_id": msg_id,
        "type": event_type(kind),
        "body": current().data_keys.seal(body, body_place(msg_id)),
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


def open_body(row: OutboxEvent) -> str | None:
    return current().data_keys.unseal(row.body, body_place(row.msg_id)) if row.body else None


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
    for chunk in chunks(rows):
        s.execute(insert(OutboxEvent), chunk)
    return len(rows)
