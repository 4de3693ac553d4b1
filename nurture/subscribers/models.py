from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.clock import now
from nurture.db import Base, StrEnumColumn

if TYPE_CHECKING:
    from nurture.sequences.models import Sequence, Step


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"  # signed up, not yet confirmed: nothing but the confirmation is sent
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"  # marked our mail as spam: never mailed again


class EnrollmentStatus(enum.StrEnum):
    PENDING = "pending"  # waits for the subscriber's confirmation
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    UNSUBSCRIBED = "unsubscribed"
    BOOKED = "booked"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    CANCELLED = "cancelled"


ENDED = {
    EnrollmentStatus.COMPLETED,
    EnrollmentStatus.UNSUBSCRIBED,
    EnrollmentStatus.BOOKED,
    EnrollmentStatus.BOUNCED,
    EnrollmentStatus.COMPLAINED,
    EnrollmentStatus.CANCELLED,
}


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalised, lower-case
    first_name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[SubscriberStatus] = mapped_column(
        StrEnumColumn(SubscriberStatus, 20), default=SubscriberStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(default=now)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    booked_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    complained_at: Mapped[datetime | None]

    enrollments: Mapped[list[Enrollment]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )
    consents: Mapped[list[Consent]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )

    @property
    def can_receive(self) -> bool:
        return self.status == SubscriberStatus.CONFIRMED


class Enrollment(Base):
    """A subscriber's place in one sequence. `next_due_at` is the scheduler's whole queue."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "sequence_id"),
        Index("ix_enrollments_due", "status", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    status: Mapped[EnrollmentStatus] = mapped_column(
        StrEnumColumn(EnrollmentStatus, 20), default=EnrollmentStatus.PENDING
    )
    # The next step to send and when; both NULL while a claimed delivery is in flight.
    next_step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"))
    next_due_at: Mapped[datetime | None]
    # The last step sent (NULL = none yet): live edits place new steps relative to it.
    last_step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"))
    last_sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # How this enrollment began (web-form, cli, import): each email's footer says it truly.
    source: Mapped[str | None] = mapped_column(String(40))

    subscriber: Mapped[Subscriber] = relationship(back_populates="enrollments")
    sequence: Mapped[Sequence] = relationship()
    next_step: Mapped[Step | None] = relationship(foreign_keys=[next_step_id])
    last_step: Mapped[Step | None] = relationship(foreign_keys=[last_step_id])


class Consent(Base):
    """What the person agreed to, when, and where: kept as evidence, with no raw IP address."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    sequence_id: Mapped[int | None] = mapped_column(ForeignKey("sequences.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(40))  # web-form, cli, import
    article: Mapped[str | None] = mapped_column(String(500))
    consent_text: Mapped[str] = mapped_column(String(2000))
    consent_version: Mapped[str] = mapped_column(String(40))
    client_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    confirmed_at: Mapped[datetime | None]

    subscriber: Mapped[Subscriber] = relationship(back_populates="consents")


class Suppression(Base):
    """Addresses that must never be mailed again, kept only as a keyed hash (after `forget`)."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=now)


class Event(Base):
    """What happened, for stats and a person's history. Holds ids, never addresses."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_kind_sequence", "kind", "sequence_id"),)

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
    always does. The body (it names the person) is erased once delivered or given up on."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_due", "status", "next_attempt_at"),)

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
