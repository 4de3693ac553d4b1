"""send limits: the shared token bucket when the broker is not Redis

Revision ID: 0003_send_limits
Revises: 0006_events_retention
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_send_limits"
down_revision = "0006_events_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_limits",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("floor", sa.Float(), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("day_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_send_limits")),
    )


def downgrade() -> None:
    op.drop_table("send_limits")
