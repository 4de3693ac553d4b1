"""The migrated schema is the models' schema, on both databases, and the partial indexes
serve the queries they were made for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

import nurture.models  # noqa: F401  (every table, on Base.metadata)
from nurture.db import Base
from nurture.delivery.dispatch import CLAIM, START
from nurture.migrations import downgrade, upgrade

# What a partial index holds, as each database spells it back.
PREDICATES = {
    "ix_enrollments_claim": "next_due_at IS NOT NULL",
    "ix_enrollments_break_end": "paused_until IS NOT NULL",
    "ix_enrollments_pending": "status = 'pending'",
    "ix_deliveries_message_id": "message_id IS NOT NULL",
}


def _predicates(conn: Connection) -> dict[str, str]:
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT indexrelid::regclass::text, pg_get_expr(indpred, indrelid)"
                " FROM pg_index WHERE indpred IS NOT NULL"
            )
        )
    else:
        rows = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%'")
        )
    return {name: " ".join(sql.split()) for name, sql in rows}


def _normal(predicate: str) -> str:
    # PostgreSQL writes back "(next_due_at IS NOT NULL)", "((status)::text = 'pending'::text)".
    return predicate.replace("(", "").replace(")", "").replace("::text", "")


def test_migrations_give_the_models_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        # SQLite spells a column's type back by its affinity (DOUBLE reads as FLOAT).
        opts = {"compare_type": conn.dialect.name == "postgresql"}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
        predicates = _predicates(conn)
    engine.dispose()
    assert diff == []
    assert set(predicates) == set(PREDICATES)
    for name, where in PREDICATES.items():
        assert _normal(where) in _normal(predicates[name]), name


def test_partial_indexes_go_down_and_up_again(db_url: str) -> None:
    downgrade(db_url, "0010_claim_index")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert _predicates(conn) == {}
        assert "ix_deliveries_message_id" in {
            i["name"] for i in inspect(conn).get_indexes("deliveries")
        }
    engine.dispose()
    upgrade(db_url)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert set(_predicates(conn)) == set(PREDICATES)
    engine.dispose()


def _plan(conn: Connection, sql: str, params: dict[str, object]) -> str:
    # Told never to scan the whole table: the plan says whether an index can serve at all,
    # whatever a few test rows would make the planner prefer.
    conn.execute(text("SET enable_seqscan = off"))
    return "\n".join(conn.execute(text(f"EXPLAIN {sql}"), params).scalars())


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (
            "SELECT id FROM enrollments WHERE status = 'paused'"
            " AND paused_until IS NOT NULL AND paused_until <= now()",
            "ix_enrollments_break_end",
        ),
        (
            "SELECT id FROM enrollments WHERE status = 'pending' AND created_at <= now()",
            "ix_enrollments_pending",
        ),
        ("SELECT id FROM deliveries WHERE message_id = 'x'", "ix_deliveries_message_id"),
    ],
)
def test_upkeep_queries_have_an_index(postgres_url: str, sql: str, index: str) -> None:
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert index in _plan(conn, sql, {})
    engine.dispose()


def test_the_claim_walks_the_partial_index(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.connect() as conn:
        compiled = CLAIM.compile(dialect=conn.dialect)
        params = dict(compiled.params)
        params.update(at=at, lease_until=at + timedelta(minutes=5), limit=1000)
        params.update(after_due=START[0], after_id=START[1])
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}", params))
    engine.dispose()
    assert "ix_enrollments_claim" in plan
