"""sequences.archived_at: `nurture sequences archive` closes a sequence's form.

Revision ID: 0005_operator
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nurture.db

revision = "0005_operator"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sequences") as batch:
        batch.add_column(
            sa.Column("archived_at", nurture.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("sequences") as batch:
        batch.drop_column("archived_at")
