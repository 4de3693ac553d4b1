"""Recording what happened to a person: the one way events are written by the services.
New events of an announced kind reach the outbox by themselves (events/outbox.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from nurture.events.models import Event, EventKind
from nurture.subscribers.models import Subscriber


def record_event(
    s: Session,
    kind: EventKind,
    sub: Subscriber | None = None,
    *,
    data: dict[str, Any] | None = None,
    **ids: int | None,
) -> Event:
    event = Event(kind=kind, subscriber_id=sub.id if sub else None, data=data or {}, **ids)
    s.add(event)
    return event
