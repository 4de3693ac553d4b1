"""partial indexes: the claim index holds only what waits to be sent

A claim clears next_due_at. With every enrollment in ix_enrollments_claim, that clearing
wrote a new index entry for each claimed row (which no query reads: nothing looks for
"due at NULL"), and the index kept every ended, pending and in-flight enrollment. Holding
only rows with a due time makes the claim write less and the index a fraction of the size.

Two queries that used the old index's status prefix get small indexes of their own: the
end of a reader's break (upkeep, every minute) and old unconfirmed signups (retention).
Message-IDs are indexed only where one was sent (a queued delivery has none).

Revision ID: 0011_partial_indexes
Revises: 0010_claim_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_partial_indexes"
down_revision = "0010_claim_index"
branch_labels = None
depends_on = None

# (name, table, columns, predicate): the same predicate on both databases.
PARTIAL = [
    ("ix_enrollments_claim", "enrollments", ["status", "next_due_at", "id"],
     "next_due_at IS NOT NULL"),
    ("ix_enrollments_break_end", "enrollments", ["paused_until"], "paused_until IS NOT NULL"),
    ("ix_enrollments_pending", "enrollments", ["created_at"], "status = 'pending'"),
    ("ix_deliveries_message_id", "deliveries", ["message_id"], "message_id IS NOT NULL"),
]  # fmt: skip
REPLACED = {"ix_enrollments_claim", "ix_deliveries_message_id"}


def upgrade() -> None:
    for name, table, columns, where in PARTIAL:
        if name in REPLACED:
            op.drop_index(name, table_name=table)
        predicate = sa.text(where)
        op.create_index(name, table, columns, postgresql_where=predicate, sqlite_where=predicate)


def downgrade() -> None:
    for name, table, columns, _ in PARTIAL:
        op.drop_index(name, table_name=table)
        if name in REPLACED:
            op.create_index(name, table, columns)
