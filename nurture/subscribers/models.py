from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.clock import now
from nurture.context import current
from nurture.db import Base, StrEnumColumn, partial_index

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


def sealed_place(public_id: str, column: str) -> str:
    """What a sealed value of a subscriber row is bound to: it opens there and nowhere else."""
    return f"subscribers.{column}:{public_id}"


class Subscriber(Base):
    """A reader. Their address and name are sealed (nurture/encryption.py) and written only
    through nurture/subscribers/addresses.py; `email` and `first_name` open them."""

    __tablename__ = "subscribers"
    # Ids are never given out twice: on SQLite, without AUTOINCREMENT, the next row would
    # take the id of the person just forgotten (and every table naming people does the same).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random and this person's alone: every link, Message-ID and VERP tag names it, so a
    # number that another person gets later can never act on this one.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # Blind indexes (keyed HMACs): of the normalised address, unique as the address was, and
    # of its canonical form (no +tag, no Gmail dots), to know a person who left under
    # another spelling of their address.
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    canonical_index: Mapped[str] = mapped_column(String(64), index=True)
    email_sealed: Mapped[str] = mapped_column(Text)
    first_name_sealed: Mapped[str | None] = mapped_column(Text)
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
    def email(self) -> str:
        return current().data_keys.unseal(self.email_sealed, self.place("email"))

    @property
    def first_name(self) -> str | None:
        sealed = self.first_name_sealed
        return current().data_keys.unseal(sealed, self.place("first_name")) if sealed else None

    def place(self, column: str) -> str:
        return sealed_place(self.public_id, column)

    @property
    def can_receive(self) -> bool:
        return self.status == SubscriberStatus.CONFIRMED


class Enrollment(Base):
    """A subscriber's place in one sequence. `next_due_at` is the scheduler's whole queue."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "sequence_id"),
        # The order a dispatch pass claims in (delivery/dispatch.py): only what waits to be
        # sent, so a claim (which clears next_due_at) writes no entry here.
        partial_index(
            "ix_enrollments_claim", "status", "next_due_at", "id", where="next_due_at IS NOT NULL"
        ),
        # Upkeep ends breaks every minute; retention drops old unconfirmed signups.
        partial_index("ix_enrollments_break_end", "paused_until", where="paused_until IS NOT NULL"),
        partial_index("ix_enrollments_pending", "created_at", where="status = 'pending'"),
        {"sqlite_autoincrement": True},
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
    # Set while PAUSED by the reader's own "take a break" (subscribers/breaks.py): the pause
    # ends by itself then. NULL for a pause that waits for a person (an operator, a reply).
    paused_until: Mapped[datetime | None]
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
    __table_args__ = {"sqlite_autoincrement": True}

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
    """Addresses that must never be mailed or added again, kept only as the blind index of
    their canonical form (after `forget`; subscribers/suppression.py). Rows written before
    addresses were sealed hold an HMAC of the exact address under the secret key."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=now)
