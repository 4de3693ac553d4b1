"""The migration that seals personal data keeps every existing row: the same ids, the same
people (found by address, named in their emails), their old links still working, event
bodies sealed, and on SQLite every people table rebuilt so no id is given out twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from nurture import tokens
from nurture.config import load_settings
from nurture.db import transaction
from nurture.migrations import upgrade
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.models import Subscriber
from tests.conftest import PG_ADMIN_URL, reload_runtime

BEFORE = "0004_mail_feedback"  # the schema before addresses were sealed


def _old_rows(url: str) -> None:
    """What an install had before: plain addresses and names, a pending outbox body."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, first_name, timezone, status, created_at) "
                "VALUES (7, 'dana@example.com', 'Dana', 'UTC', 'confirmed', '2026-01-01'), "
                "(9, 'robin@example.com', NULL, NULL, 'pending', '2026-01-02')"
            )
        )
        body = json.dumps({"type": "subscriber.confirmed", "data": {"email": "dana@example.com"}})
        conn.execute(
            text(
                "INSERT INTO event_outbox (msg_id, type, body, status, attempts, created_at) "
                "VALUES ('msg_1', 'subscriber.confirmed', :b, 'pending', 0, '2026-01-01')"
            ),
            {"b": body},
        )
    engine.dispose()


@pytest.fixture
def old_database(
    request: pytest.FixtureRequest, tmp_path: Path, settings_env: dict[str, str]
) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        admin = request.getfixturevalue("postgres_admin")
        name = f"nurture_old_{tmp_path.name[-12:].replace('-', '_').lower()}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: _drop(admin, name))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url, BEFORE)
    _old_rows(url)
    return url


def _drop(admin: object, name: str) -> None:
    with admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("old_database", ["sqlite", "postgresql"], indirect=True)
def test_upgrading_seals_what_was_there_and_keeps_it(
    old_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(old_database, settings=load_settings())
    engine = create_engine(old_database)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM subscribers ORDER BY id")).mappings().all()
        body = conn.execute(text("SELECT body FROM event_outbox")).scalar_one()
        if engine.dialect.name == "sqlite":
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'subscribers'"))
            assert "AUTOINCREMENT" in ddl.scalar_one()
    engine.dispose()
    assert [r["id"] for r in raw] == [7, 9]
    assert not any("dana" in str(v).lower() or "robin" in str(v) for r in raw for v in r.values())
    assert "dana" not in body
    monkeypatch.setenv("NURTURE_DATABASE_URL", old_database)
    reload_runtime()
    with transaction() as s:
        dana = find_subscriber(s, "dana@example.com")
        assert dana is not None and (dana.id, dana.first_name) == (7, "Dana")
        robin = find_subscriber(s, "robin@example.com")
        assert robin is not None and robin.first_name is None
        # An unsubscribe link from before (a bare number) still lets its reader go.
        old_link = tokens.make(tokens.UNSUBSCRIBE, {"s": 7})
    from nurture.subscribers.unsubscribe import unsubscribe_by_token

    unsubscribe_by_token(old_link, how="link")
    with transaction() as s:
        assert s.get_one(Subscriber, 7).status == "unsubscribed"


def test_a_new_database_needs_no_key_to_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url)  # nothing to seal: the keys are made on first use, under the running key
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM data_keyring")).scalar() == 0
    engine.dispose()
    shutil.rmtree(tmp_path, ignore_errors=True)
