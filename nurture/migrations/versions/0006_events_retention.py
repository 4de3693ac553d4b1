"""event webhooks outbox (NURTURE_EVENTS_URL); retention needs no schema of its own

Revision ID: 0006_events_retention
Revises: 0002_consent_edges
Create Date: 2026-11-22 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nurture.db

revision = "0006_events_retention"
down_revision = "0002_consent_edges"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msg_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_event_outbox_msg_id")),
    )
    op.create_index(
        "ix_event_outbox_due", "event_outbox", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_event_outbox_due", table_name="event_outbox")
    op.drop_table("event_outbox")
