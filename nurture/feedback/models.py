"""What the feedback code remembers about notifications it already handled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from nurture.clock import now
from nurture.db import Base


class FeedbackSeen(Base):
    """One handled notification (an inbox message, a provider event) or a used webhook
    token, by a keyed hash: a second delivery of the same one changes nothing, and a
    captured Mailgun request cannot be replayed. Holds no address and no content."""

    __tablename__ = "mail_feedback_seen"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=now, index=True)
