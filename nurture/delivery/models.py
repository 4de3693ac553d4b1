from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.clock import now
from nurture.db import Base, StrEnumColumn, partial_index
from nurture.sequences.models import Step
from nurture.subscribers.models import Enrollment


class DeliveryStatus(enum.StrEnum):
    # Claimed by a dispatcher and handed to the broker. A worker turns it into SENT in the
    # same transaction that sends it; if the worker dies, the lease runs out and the
    # dispatcher hands it out again.
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Delivery(Base):
    """One step for one enrollment. The unique key makes a second send impossible to record."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        Index("ix_deliveries_lease", "status", "lease_until"),
        # Bounces and replies name the delivery by the Message-ID we sent; a queued one has
        # none yet.
        partial_index("ix_deliveries_message_id", "message_id", where="message_id IS NOT NULL"),
        # Ids are never given out twice (SQLite would reuse the highest after a delete):
        # bounces, replies and stored links name deliveries by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(
        StrEnumColumn(DeliveryStatus, 20), default=DeliveryStatus.QUEUED
    )
    due_at: Mapped[datetime]
    claimed_at: Mapped[datetime] = mapped_column(default=now)
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(300))
    # SMTP reply or exception class only: never the address or message content.
    error: Mapped[str | None] = mapped_column(String(500))

    enrollment: Mapped[Enrollment] = relationship()
    step: Mapped[Step] = relationship()


class Link(Base):
    """A URL stored for one email; /l/<token> may redirect only to these."""

    __tablename__ = "links"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    is_consult: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)


class SendLimitState(Base):
    """The shared bucket when there is no Redis: one row, locked for each message."""

    __tablename__ = "send_limits"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    tokens: Mapped[float] = mapped_column(default=1.0)
    stamp: Mapped[float] = mapped_column(default=0.0)  # epoch seconds
    floor: Mapped[float] = mapped_column(default=0.0)  # AIMD cap at `since`; 0: none
    since: Mapped[float] = mapped_column(default=0.0)
    # The UTC day (YYYY-MM-DD) that day_count counts.
    day: Mapped[str] = mapped_column(String(10), default="")
    day_count: Mapped[int] = mapped_column(default=0)
