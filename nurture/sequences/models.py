from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.clock import now
from nurture.db import Base, StrEnumColumn
from nurture.sequences.settings import SequenceSettings


class SequenceStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class Sequence(Base):
    __tablename__ = "sequences"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[SequenceStatus] = mapped_column(
        StrEnumColumn(SequenceStatus, 20), default=SequenceStatus.ACTIVE
    )
    # The validated sequence.yaml minus its steps (from, consult, window, ...): see loader.py.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_path: Mapped[str | None] = mapped_column(String(1000))
    # Set by `sequences archive`: the form is closed (410); see nurture/sequences/archive.py.
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)

    @property
    def config(self) -> SequenceSettings:
        """The settings, typed (nurture/sequences/settings.py); parsed once per loaded row."""
        raw = self.settings
        cached = self.__dict__.get("_config")
        if cached is None or cached[0] is not raw:
            cached = (raw, SequenceSettings.of(raw))
            self.__dict__["_config"] = cached
        return cached[1]

    steps: Mapped[list[Step]] = relationship(
        back_populates="sequence",
        order_by="Step.position",
        primaryjoin="and_(Sequence.id == Step.sequence_id, Step.removed_at.is_(None))",
        viewonly=True,
    )


class Step(Base):
    """One email of a sequence. `key` is stable across edits; removed steps are kept for history."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("sequence_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]
    delay_seconds: Mapped[int]
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)  # Markdown with Jinja
    body_file: Mapped[str | None] = mapped_column(String(300))
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    removed_at: Mapped[datetime | None]

    sequence: Mapped[Sequence] = relationship(back_populates="steps")
