"""The dashboard's tables: operators, their server-side sessions, login throttles, the audit log.

No reader's address is stored here: the audit log names a person by their subscriber id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.clock import now
from nurture.db import Base


class Operator(Base):
    """Someone who runs the practice's list. Without a password they cannot log in: the
    one-time setup link (its hash here, 15 minutes) is how they choose one."""

    __tablename__ = "operators"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # The TOTP secret, sealed under the data key (bound to this operator's row).
    totp_sealed: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    # The last 30-second step whose code was accepted: a code works once.
    totp_last_step: Mapped[int] = mapped_column(default=0)
    # SHA-256 of each unused recovery code (they are random, so a fast hash is enough).
    recovery_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    setup_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    setup_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_login_at: Mapped[datetime | None]

    sessions: Mapped[list[OperatorSession]] = relationship(
        back_populates="operator", cascade="all, delete-orphan", passive_deletes=True
    )


class OperatorSession(Base):
    """A logged-in browser. The cookie holds a random token; only its hash is kept, so a copy
    of the database logs no one in. Removing the row logs that browser out."""

    __tablename__ = "operator_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_seen_at: Mapped[datetime] = mapped_column(default=now)

    operator: Mapped[Operator] = relationship(back_populates="sessions")


class LoginThrottle(Base):
    """Failed logins per account name and per client (both as keyed hashes): each failure
    beyond a few makes the next try wait longer."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=now)


class AuditEntry(Base):
    """One operator action: who, what, on which person (by id) or thing, when, and how."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The name is kept as written: the entry outlives the operator.
    operator: Mapped[str] = mapped_column(String(60))
    action: Mapped[str] = mapped_column(String(60))
    # No foreign key: the entry stays when the person is forgotten, naming only a number.
    subscriber_id: Mapped[int | None]
    target: Mapped[str | None] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(20))  # dashboard, cli
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=now)
