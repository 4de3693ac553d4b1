"""The database: its declarative base, how an engine is made, and the current runtime's
sessions (the runtime holds the engine; this module holds no state).

Two kinds of transaction. `transaction()` may write: on SQLite it takes the single write lock
at BEGIN (IMMEDIATE), so two writers queue behind each other instead of one failing when it
upgrades a read lock. `reading()` only reads: on SQLite it begins DEFERRED and, in WAL mode,
reads a snapshot while a writer works, so a page, a report or the health check never waits
for an import or a send. Every writer keeps its transactions short (about a second at most:
imports, edits, purges and key rotation go in batches), so a writer waits little.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    DateTime,
    Engine,
    Index,
    MetaData,
    String,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from nurture.context import current
from nurture.errors import NurtureError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone, so we normalise on both sides."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use nurture.clock.now()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime}


# The execution option that picks how a SQLite transaction begins (see the module).
BEGIN = "nurture_sqlite_begin"
# How long a SQLite writer waits for the lock: far longer than any writer holds it.
BUSY_TIMEOUT_SECONDS = 30


def make_engine(url: str) -> Engine:
    # hide_parameters: a database error's message (logged with its traceback) would otherwise
    # carry the statement's parameters: addresses, names, tokens.
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the web process read while a worker writes; foreign keys are off by
            # default in SQLite and we rely on them for cascades.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            # Deleted rows are overwritten with zeros, not left in free pages: what `forget`
            # erases must not stay readable in the file (some builds default it off).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()
            # We say how each transaction begins (below), not the driver.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(BEGIN, 'IMMEDIATE')}")

        return engine
    # A server that does not answer (a firewall dropping packets) fails in seconds with one
    # line, instead of hanging a command for the operating system's TCP timeout.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": 10},
        hide_parameters=True,
    )


# Rows per bulk statement: SQLite allows 32,766 parameters per statement (PostgreSQL 65,535),
# and a transaction of a few thousand rows keeps every other writer's wait short.
CHUNK_ROWS = 1000

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[list[T]]:
    """`items` in consecutive lists of at most `size`: one bulk statement each."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def insert_ignoring_conflict(conn: Any, model: type[Base]) -> Any:
    """INSERT that does nothing when the row's key already exists (two first uses racing)."""
    if conn.dialect.name == "postgresql":
        return pg_insert(model).on_conflict_do_nothing()
    return sqlite_insert(model).on_conflict_do_nothing()


def checkpoint(engine: Engine) -> None:
    """After erasing on SQLite: copy the write-ahead log into the database file and empty
    it, so the erased rows' old pages leave the -wal file too. Waits for readers (the busy
    timeout); outside any transaction, which a checkpoint cannot run inside."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet, else None."""
    parsed = make_url(url)
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or name in ("", ":memory:") or "mode=memory" in name:
        return None
    return None if Path(name).exists() else name


def open_database(url: str) -> tuple[Engine, sessionmaker[Session], sessionmaker[Session]]:
    """An engine, its writing sessions and its reading sessions, for a runtime. Not for the
    migrations: SQLite would make an empty file on first connect, and a command that only
    reads (run in the wrong folder) would leave a stray nurture.db behind instead of saying
    what is wrong."""
    missing = missing_sqlite_file(url)
    if missing:
        raise NurtureError(
            f"no database at {missing}: run `nurture db upgrade` here first, "
            "or set NURTURE_DATABASE_URL"
        )
    engine = make_engine(url)
    readers = engine.execution_options(**{BEGIN: "DEFERRED"})
    return (
        engine,
        sessionmaker(engine, expire_on_commit=False),
        sessionmaker(readers, expire_on_commit=False),
    )


def get_engine() -> Engine:
    """The current runtime's engine (nurture.runtime)."""
    return current().engine


def session() -> Session:
    return current().session()


def transaction() -> AbstractContextManager[Session]:
    """A session whose work commits at the end of the block, or rolls back on error."""
    return current().transaction()


def reading() -> AbstractContextManager[Session]:
    """A transaction that only reads: it never waits for a writer (see the module)."""
    return current().reading()


E = TypeVar("E", bound=StrEnum)


def partial_index(name: str, *columns: str, where: str) -> Index:
    """An index of only the rows `where` holds for, the same on both databases."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


class StrEnumColumn(TypeDecorator[E]):
    """A status column: stored as the plain VARCHAR its migration made (no database enum,
    so adding a status needs no migration), loaded back as the enum member.

    Binding takes any string, not only members: a query may compare a column with a word
    that is not among its values (`subscribers list --status active` asks both statuses)."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> E | None:
        return None if value is None else self.enum(value)
