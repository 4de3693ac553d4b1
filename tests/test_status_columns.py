"""db.StrEnumColumn: a status is stored as its plain word and loaded back as the enum member."""

from __future__ import annotations

from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import Session

from nurture.db import StrEnumColumn
from nurture.runtime import Runtime
from nurture.subscribers.models import Subscriber, SubscriberStatus


def test_a_status_column_is_the_same_varchar() -> None:
    column = Subscriber.__table__.c.status
    assert isinstance(column.type, StrEnumColumn)
    assert isinstance(column.type.impl_instance, String) and column.type.impl_instance.length == 20


def test_a_status_is_stored_as_its_word_and_loaded_as_the_member() -> None:
    kind = StrEnumColumn(SubscriberStatus, 20)
    assert kind.process_bind_param(SubscriberStatus.BOUNCED, None) == "bounced"
    # Any word may be compared with a status column, even one it never holds.
    assert kind.process_bind_param("active", None) == "active"
    loaded = kind.process_result_value("bounced", None)
    assert loaded is SubscriberStatus.BOUNCED
    assert kind.process_result_value(None, None) is None


def test_rows_come_back_as_members(runtime: Runtime) -> None:
    # The runtime gives the row's default times their clock.
    engine = create_engine("sqlite://")
    Subscriber.__table__.create(engine)
    with Session(engine) as s:
        s.add(Subscriber(public_id="p", email_index="i", canonical_index="c", email_sealed="x"))
        s.commit()
        status = s.scalar(select(Subscriber.status))
        raw = s.connection().exec_driver_sql("SELECT status FROM subscribers").scalar()
    assert status is SubscriberStatus.PENDING and raw == "pending"
