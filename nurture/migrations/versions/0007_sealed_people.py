"""personal data sealed at rest; ids never reused; a public id per person

Addresses and names move to sealed columns with blind indexes (nurture/encryption.py), the
event outbox's bodies are sealed, each subscriber gets a random public id, and on SQLite
every table that links and tokens name is rebuilt with AUTOINCREMENT, so a deleted row's id
is never given to a new one. Existing rows keep their ids and data. Sealing needs the data
key (NURTURE_DATA_KEY; in development the published development key, as at run time).

Revision ID: 0007_sealed_people
Revises: 0004_mail_feedback
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import context, op

import nurture.db
from nurture.config import load_settings
from nurture.encryption import DataKeys, configured_keys
from nurture.events.outbox import body_place
from nurture.keyring import load_keys
from nurture.subscribers.addresses import seal_person
from nurture.subscribers.models import sealed_place

revision = "0007_sealed_people"
down_revision = "0004_mail_feedback"
branch_labels = None
depends_on = None

# Tables whose ids links, tokens, Message-IDs or VERP tags name (and their neighbours).
AUTOINCREMENT = ("subscribers", "consents", "enrollments", "deliveries", "links", "events")


def upgrade() -> None:
    op.create_table(
        "data_keyring",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", nurture.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_keyring")),
    )
    with op.batch_alter_table("subscribers") as batch:
        for name, kind in (
            ("public_id", sa.String(32)),
            ("email_index", sa.String(64)),
            ("canonical_index", sa.String(64)),
            ("email_sealed", sa.Text()),
            ("first_name_sealed", sa.Text()),
        ):
            batch.add_column(sa.Column(name, kind, nullable=True))
    _seal_existing_rows()
    with op.batch_alter_table("subscribers", **_rebuilt()) as batch:
        batch.drop_constraint("uq_subscribers_email", type_="unique")
        batch.drop_column("email")
        batch.drop_column("first_name")
        for name in ("public_id", "email_index", "canonical_index", "email_sealed"):
            batch.alter_column(name, nullable=False)
        batch.create_unique_constraint(batch.f("uq_subscribers_public_id"), ["public_id"])
        batch.create_unique_constraint(batch.f("uq_subscribers_email_index"), ["email_index"])
        batch.create_index(batch.f("ix_subscribers_canonical_index"), ["canonical_index"])
    for table in AUTOINCREMENT[1:] + ("event_outbox",):
        if op.get_bind().dialect.name == "sqlite":
            with op.batch_alter_table(table, **_rebuilt()):
                pass


def _rebuilt() -> dict[str, Any]:
    """On SQLite, rebuild the table with AUTOINCREMENT (its rows, ids and indexes kept)."""
    if op.get_bind().dialect.name != "sqlite":
        return {}
    return {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}}


def _keys() -> DataKeys:
    settings = context.config.attributes.get("settings") or load_settings()
    keys = configured_keys(
        settings.data_key.get_secret_value() if settings.data_key else None,
        settings.previous_data_keys,
        production=settings.env == "production",
    )
    return load_keys(op.get_bind(), keys)


def _seal_existing_rows() -> None:
    conn = op.get_bind()
    people = conn.execute(sa.text("SELECT id, email, first_name FROM subscribers")).all()
    bodies = conn.execute(
        sa.text("SELECT id, msg_id, body FROM event_outbox WHERE body IS NOT NULL")
    ).all()
    if not people and not bodies:
        return  # a new database: its keys are made on first use, under the running key
    keys = _keys()
    for row_id, email, first_name in people:
        values = seal_person(keys, secrets.token_hex(16), email, first_name)
        conn.execute(
            sa.text(
                "UPDATE subscribers SET public_id = :public_id, email_index = :email_index, "
                "canonical_index = :canonical_index, email_sealed = :email_sealed, "
                "first_name_sealed = :first_name_sealed WHERE id = :id"
            ),
            {**values, "id": row_id},
        )
    for row_id, msg_id, body in bodies:
        conn.execute(
            sa.text("UPDATE event_outbox SET body = :body WHERE id = :id"),
            {"body": keys.seal(body, body_place(msg_id)), "id": row_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("first_name", sa.String(100), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, public_id, email_sealed, first_name_sealed FROM subscribers")
    ).all()
    bodies = conn.execute(
        sa.text("SELECT id, msg_id, body FROM event_outbox WHERE body IS NOT NULL")
    ).all()
    if rows or bodies:
        keys = _keys()
        for row_id, public_id, email, name in rows:
            conn.execute(
                sa.text("UPDATE subscribers SET email = :e, first_name = :n WHERE id = :id"),
                {
                    "e": keys.unseal(email, sealed_place(public_id, "email")),
                    "n": keys.unseal(name, sealed_place(public_id, "first_name")) if name else None,
                    "id": row_id,
                },
            )
        for row_id, msg_id, body in bodies:
            conn.execute(
                sa.text("UPDATE event_outbox SET body = :body WHERE id = :id"),
                {"body": keys.unseal(body, body_place(msg_id)), "id": row_id},
            )
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_index(batch.f("ix_subscribers_canonical_index"))
        batch.drop_constraint(batch.f("uq_subscribers_email_index"), type_="unique")
        batch.drop_constraint(batch.f("uq_subscribers_public_id"), type_="unique")
        for name in ("public_id", "email_index", "canonical_index"):
            batch.drop_column(name)
        batch.drop_column("email_sealed")
        batch.drop_column("first_name_sealed")
        batch.alter_column("email", nullable=False)
        batch.create_unique_constraint("uq_subscribers_email", ["email"])
    op.drop_table("data_keyring")
