"""The delivery store on SQLite (the embedded default): SQLAlchemy Core on one connection
held for the batch. SQLite has no row locks; every transaction here begins IMMEDIATE
(nurture.db), so holding the database's single write lock is the lock."""

from __future__ import annotations

from datetime import datetime
from typing import Self

from sqlalchemy import Connection

from nurture.db import get_engine
from nurture.delivery.store import (
    ADD_LINK,
    ADVANCE,
    CANCEL,
    DROP,
    GIVE_BACK,
    MARK_SENT,
    STATE,
    Advance,
    SessionWork,
    State,
    link_params,
    put_back_params,
    sent_params,
)


class SQLiteStore(SessionWork):
    def __enter__(self) -> Self:
        self._conn: Connection = get_engine().connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()  # rolls back whatever a failure left open

    def lock(self, delivery_id: int) -> State | None:
        self._conn.begin()
        row = self._conn.execute(STATE, {"d_id": delivery_id}).one_or_none()
        return None if row is None else State.of(row)

    def add_link(self, delivery_id: int, url: str, is_consult: bool) -> int:
        return int(
            self._conn.execute(ADD_LINK, link_params(delivery_id, url, is_consult)).scalar_one()
        )

    def record_sent(self, delivery_id: int, message_id: str, advance: Advance) -> None:
        values = sent_params(delivery_id, message_id, advance)
        self._conn.execute(MARK_SENT, values)
        self._conn.execute(ADVANCE, values)
        self._conn.commit()

    def cancel(self, delivery_id: int, why: str) -> None:
        self._conn.execute(CANCEL, {"d_id": delivery_id, "d_error": why})
        self._conn.commit()

    def put_back(self, delivery_id: int, enrollment_id: int, step_id: int, due: datetime) -> None:
        values = put_back_params(delivery_id, enrollment_id, step_id, due)
        self._conn.execute(GIVE_BACK, values)
        self._conn.execute(DROP, values)
        self._conn.commit()

    def release(self) -> None:
        self._conn.rollback()
