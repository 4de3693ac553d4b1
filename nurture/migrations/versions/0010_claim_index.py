"""claim index: due enrollments in the order a dispatch pass claims them

The claim walks (next_due_at, id) onward from where its previous slice ended, so a pass over
a large backlog never rereads the index entries of what it claimed already (they stay in
the index until vacuum). The index on (status, next_due_at) it replaces served a prefix of
this one's columns, which still serves every query the old one did.

Revision ID: 0010_claim_index
Revises: 0009_dashboard
"""

from __future__ import annotations

from alembic import op

revision = "0010_claim_index"
down_revision = "0009_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_enrollments_claim", "enrollments", ["status", "next_due_at", "id"])
    op.drop_index("ix_enrollments_due", table_name="enrollments")


def downgrade() -> None:
    op.create_index("ix_enrollments_due", "enrollments", ["status", "next_due_at"])
    op.drop_index("ix_enrollments_claim", table_name="enrollments")
