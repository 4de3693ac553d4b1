"""enrollments.paused_until: a reader's "take a break for two weeks" ends by itself.

Revision ID: 0008_break
Revises: 0007_sealed_people
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nurture.db

revision = "0008_break"
down_revision = "0007_sealed_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: on SQLite a batch rebuild would lose the table's AUTOINCREMENT.
    op.add_column(
        "enrollments",
        sa.Column("paused_until", nurture.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("paused_until")
