"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 20:41:44.020695
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nurture.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each table after the ones its foreign keys name. The order is also the order of
    # SQLite's stored schema, so it stays as first generated.
    _create_articles()
    _create_sequences()
    _create_subscribers()
    _create_consents()
    _create_steps()
    _create_enrollments()
    _create_deliveries()
    _create_events()
    _create_links()


def _create_articles() -> None:
    """Imported blog articles: no foreign key leads to or from them."""
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("source_file", sa.String(length=300), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("imported_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_articles")),
        sa.UniqueConstraint("slug", name=op.f("uq_articles_slug")),
        sa.UniqueConstraint("source_file", name=op.f("uq_articles_source_file")),
    )


def _create_sequences() -> None:
    """The sequences; steps, consents, enrollments and events point at them."""
    op.create_table(
        "sequences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("source_path", sa.String(length=1000), nullable=True),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequences")),
        sa.UniqueConstraint("slug", name=op.f("uq_sequences_slug")),
    )


def _create_subscribers() -> None:
    """People, the suppression list (by email hash only) beside them."""
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("booked_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_subscribers_email")),
    )
    op.create_table(
        "suppressions",
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_hash", name=op.f("pk_suppressions")),
    )


def _create_consents() -> None:
    """What each person agreed to, when, and to which sequence."""
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("sequence_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("article", sa.String(length=500), nullable=True),
        sa.Column("consent_text", sa.String(length=2000), nullable=False),
        sa.Column("consent_version", sa.String(length=40), nullable=False),
        sa.Column("client_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_consents_sequence_id_sequences"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_consents_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )


def _create_steps() -> None:
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("delay_seconds", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_file", sa.String(length=300), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("removed_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_steps_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint("sequence_id", "key", name=op.f("uq_steps_sequence_id")),
    )


def _create_enrollments() -> None:
    """A person in a sequence, with the due index the dispatcher scans."""
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("sequence_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("next_step_id", sa.Integer(), nullable=True),
        sa.Column("next_due_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_step_id", sa.Integer(), nullable=True),
        sa.Column("last_sent_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["last_step_id"],
            ["steps.id"],
            name=op.f("fk_enrollments_last_step_id_steps"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["next_step_id"],
            ["steps.id"],
            name=op.f("fk_enrollments_next_step_id_steps"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_enrollments_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_enrollments_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint(
            "subscriber_id", "sequence_id", name=op.f("uq_enrollments_subscriber_id")
        ),
    )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.create_index("ix_enrollments_due", ["status", "next_due_at"], unique=False)


def _create_deliveries() -> None:
    """One row per (enrollment, step) sent or queued, with the lease index for reclaiming."""
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("due_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", nurture.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_deliveries_enrollment_id_enrollments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_deliveries_step_id_steps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("enrollment_id", "step_id", name=op.f("uq_deliveries_enrollment_id")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_lease", ["status", "lease_until"], unique=False)


def _create_events() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("sequence_id", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_events_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_events_sequence_id_sequences"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_events_step_id_steps"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_events_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_kind_sequence", ["kind", "sequence_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_events_subscriber_id"), ["subscriber_id"], unique=False
        )


def _create_links() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("is_consult", sa.Boolean(), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_links_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_links_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_links_delivery_id"))

    op.drop_table("links")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_subscriber_id"))
        batch_op.drop_index("ix_events_kind_sequence")

    op.drop_table("events")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_lease")

    op.drop_table("deliveries")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_due")

    op.drop_table("enrollments")
    op.drop_table("steps")
    op.drop_table("consents")
    op.drop_table("suppressions")
    op.drop_table("subscribers")
    op.drop_table("sequences")
    op.drop_table("articles")
    # ### end Alembic commands ###
