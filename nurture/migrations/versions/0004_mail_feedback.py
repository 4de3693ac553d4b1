"""mail feedback: complaints, the Message-ID index, notifications already handled

Revision ID: 0004_mail_feedback
Revises: 0005_operator
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nurture.db

revision = "0004_mail_feedback"
down_revision = "0003_send_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("complained_at", nurture.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_message_id"), ["message_id"], unique=False)
    op.create_table(
        "mail_feedback_seen",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "key", name=op.f("pk_mail_feedback_seen")),
    )
    with op.batch_alter_table("mail_feedback_seen", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mail_feedback_seen_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_feedback_seen", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_feedback_seen_created_at"))
    op.drop_table("mail_feedback_seen")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_message_id"))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("complained_at")
