"""The delivery store on PostgreSQL: psycopg's pipeline mode on one connection held for the
batch, so a message costs one round trip to the database.

The statements are store.py's, compiled once for psycopg. The connection runs in the
driver's autocommit mode with each message's transaction spelled out, and nothing waits for
an answer it does not need: a message's writes and its COMMIT are queued, and go to the
server together with the next message's BEGIN and locking SELECT, whose answer is the first
one the loop waits for. So a crash can lose at most the one recorded message whose commit
was still queued; it is sent once more when its lease runs out, with the same Message-ID,
as after a crash between the server's "250 OK" and the commit. Whatever ends the batch
(or fails) sends what is queued first.

Commits are asynchronous (synchronous_commit off): the COMMIT returns before the WAL reaches
the disk. The commit is still visible to every other session at once and survives any
worker crash, SIGKILL included; only a crash of PostgreSQL itself (or the machine) can lose
the last few hundred milliseconds of send records (wal_writer_delay, at most three times
it), whose messages then go once more when their leases run out. A clean PostgreSQL restart
flushes everything first and loses nothing.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Self

import psycopg
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.sql.elements import ClauseElement

from nurture.db import get_engine
from nurture.delivery.models import Delivery
from nurture.delivery.store import (
    ADD_LINK,
    ADVANCE,
    CANCEL,
    DROP,
    GIVE_BACK,
    MARK_SENT,
    STATE_LOCKED,
    Advance,
    Outcome,
    SessionWork,
    State,
    StoreError,
    Verdict,
    link_params,
    put_back_params,
    sent_params,
)
from nurture.subscribers.models import Enrollment

# Both writes of a sent message in one statement (a data-modifying CTE).
_SENT = MARK_SENT.returning(Delivery.enrollment_id).cte("sent")
SENT_AND_ADVANCE = ADVANCE.where(Enrollment.id == select(_SENT.c.enrollment_id).scalar_subquery())


@functools.cache
def _sql(stmt: ClauseElement) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(dialect=postgresql_psycopg.dialect())
    return str(compiled), dict(compiled.params)


def _plain(value: Any) -> Any:
    # Enum members as their text: the driver adapts by exact type.
    return str(value) if isinstance(value, enum.Enum) else value


class PostgresStore(SessionWork):
    def __enter__(self) -> Self:
        self._pooled = get_engine().raw_connection()
        raw = self._pooled.driver_connection
        assert isinstance(raw, psycopg.Connection)
        self._raw: psycopg.Connection[Any] = raw
        raw.autocommit = True
        raw.execute("SET synchronous_commit = off")
        self._stack = contextlib.ExitStack()
        self._pipeline = self._stack.enter_context(raw.pipeline())
        self._open = False  # a message's transaction is open
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with self._errors():
                if self._open:
                    self._raw.execute("ROLLBACK")
                self._stack.close()  # leaves pipeline mode: sends what is queued
                self._raw.execute("RESET synchronous_commit")
                self._raw.autocommit = False
        except StoreError:
            self._pooled.invalidate()  # not back to the pool in an unknown state
        finally:
            self._pooled.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise StoreError(f"database error under the batch: {type(exc).__name__}") from exc

    def _queue(self, stmt: ClauseElement, params: dict[str, Any]) -> psycopg.Cursor[Any]:
        sql, defaults = _sql(stmt)
        values = {**defaults, **{k: _plain(v) for k, v in params.items()}}
        return self._raw.execute(sql, values)

    def lock(self, delivery_id: int) -> State | None:
        with self._errors():
            self._raw.execute("BEGIN")
            self._open = True
            row = self._queue(STATE_LOCKED, {"d_id": delivery_id}).fetchone()
        return None if row is None else State.of(row)

    def add_link(self, delivery_id: int, url: str, is_consult: bool) -> int:
        with self._errors():
            row = self._queue(ADD_LINK, link_params(delivery_id, url, is_consult)).fetchone()
        assert row is not None
        return int(row[0])

    def record_sent(self, delivery_id: int, message_id: str, advance: Advance) -> None:
        with self._errors():
            self._queue(SENT_AND_ADVANCE, sent_params(delivery_id, message_id, advance))
            self._raw.execute("COMMIT")
            self._open = False

    def cancel(self, delivery_id: int, why: str) -> None:
        with self._errors():
            self._queue(CANCEL, {"d_id": delivery_id, "d_error": why})
            self._raw.execute("COMMIT")
            self._open = False

    def put_back(self, delivery_id: int, enrollment_id: int, step_id: int, due: datetime) -> None:
        values = put_back_params(delivery_id, enrollment_id, step_id, due)
        with self._errors():
            self._queue(GIVE_BACK, values)
            self._queue(DROP, values)
            self._raw.execute("COMMIT")
            self._open = False

    def release(self) -> None:
        with self._errors():
            self._raw.execute("ROLLBACK")
            self._open = False

    def _flush(self) -> None:
        with self._errors():
            self._pipeline.sync()

    def record_failure(self, delivery_id: int, error: str, verdict: Verdict) -> Outcome:
        self._flush()  # what is queued commits before another connection looks
        return super().record_failure(delivery_id, error, verdict)

    def defer(self, delivery_ids: list[int], until: datetime) -> list[int]:
        self._flush()
        return super().defer(delivery_ids, until)
