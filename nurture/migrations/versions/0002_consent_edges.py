"""consent at every edge: how each enrollment came (for a truthful footer), and the
signup rate-limit counters shared by every web worker

Revision ID: 0002_consent_edges
Revises: 0005_operator
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_consent_edges"
down_revision = "0005_operator"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("source", sa.String(length=40), nullable=True))
    # Existing enrollments came the way their latest consent for that sequence says.
    op.execute(
        """
        UPDATE enrollments SET source = (
            SELECT c.source FROM consents c
            WHERE c.subscriber_id = enrollments.subscriber_id
              AND c.sequence_id = enrollments.sequence_id
            ORDER BY c.id DESC LIMIT 1
        )
        """
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limits")),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("source")
