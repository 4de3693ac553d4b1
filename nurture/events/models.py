"""Events and the outbox of event webhooks."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.clock import now
from nurture.db import Base, StrEnumColumn


class EventKind(enum.StrEnum):
    """Every kind of event, as stored in `events.kind` (plain words, so older rows read)."""

    SIGNED_UP = "signed_up"
    CONFIRMATION_SENT = "confirmation_sent"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOOKED = "booked"
    BOUNCED = "bounced"
    SOFT_BOUNCED = "soft_bounced"
    COMPLAINED = "complained"
    REPLIED = "replied"
    FORGOTTEN = "forgotten"
    PAUSED = "paused"
    RESUMED = "resumed"
    CLICKED = "clicked"
    RETRIED = "retried"
    # An operator took someone out of one sequence (`subscribers remove`), or moved them to
    # another (`subscribers move`: recorded on the sequence they left, naming the other).
    REMOVED = "removed"
    MOVED = "moved"
    # The reader chose "take a break" in an email's footer (nurture/subscribers/breaks.py).
    TOOK_BREAK = "took_break"
    # Left by `forget` for each sent or failed email, so stats keep their counts.
    SENT_ERASED = "sent_erased"
    FAILED_ERASED = "failed_erased"
    # Left by `forget` for each sequence the person was in, so the funnel keeps its signups.
    CONFIRMED_ERASED = "confirmed_erased"
    UNCONFIRMED_ERASED = "unconfirmed_erased"


class Event(Base):
    """What happened, for stats and a person's history. Holds ids, never addresses."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_kind_sequence", "kind", "sequence_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    sequence_id: Mapped[int | None] = mapped_column(ForeignKey("sequences.id", ondelete="SET NULL"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=now)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    DELIVERED = "delivered"  # the practice's endpoint answered 2xx
    FAILED = "failed"  # refused for more than a day: given up


class OutboxEvent(Base):
    """An event webhook to deliver (NURTURE_EVENTS_URL), written in the same transaction as
    the change it reports, so a rolled-back change never announces itself and a committed one
    always does. The body names the person: it is stored sealed (nurture/encryption.py,
    bound to this row's msg_id) and erased once delivered or given up on."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        Index("ix_event_outbox_due", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Standard Webhooks `webhook-id`: the same on every retry, so receivers can dedupe.
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        StrEnumColumn(OutboxStatus, 20), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
