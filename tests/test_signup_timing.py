"""The signup answer cannot tell who is known: the view reads no person before answering;
a task records the signup afterwards. (Timings themselves: bench/signup_timing.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from nurture.context import current
from nurture.db import get_engine
from tests.web_support import confirm_signup, csrf, subscriber

PEOPLE_TABLES = ("subscribers", "consents", "enrollments", "suppressions", "events")


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.lower())

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_the_view_reads_no_person_and_answers_alike(
    app: Flask, outbox: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    confirm_signup(client, outbox, "known@example.com")
    queued: list[tuple[str, dict[str, Any]]] = []
    import nurture.celery_app

    monkeypatch.setattr(nurture.celery_app, "enqueue_signup", lambda *a: queued.append(a))
    answers = []
    for email in ("known@example.com", "new@example.com"):
        token = csrf(client)
        with statements() as seen:
            r = client.post(
                "/subscribe/quick", data={"email": email, "first_name": "X", "csrf_token": token}
            )
        assert r.status_code == 200
        touched = [t for t in PEOPLE_TABLES for sql in seen if t in sql]
        assert touched == [], touched
        answers.append(r.get_data())
    assert answers[0] == answers[1]
    # One message for each, the same shape: the lookup happens in the task. It travels
    # sealed: the broker holds no address, no name.
    from nurture.subscribers.signup import open_form

    assert [q[0] for q in queued] == ["quick", "quick"]
    assert all("@" not in q[1] and "known" not in q[1] for q in queued)
    forms = [open_form(q[1]) for q in queued]
    assert [f.email for f in forms] == ["known@example.com", "new@example.com"]
    assert all(f.client_address is None for f in forms)
    assert subscriber("new@example.com") is None  # not yet: the task has not run


def test_the_task_records_the_signup_and_sends_the_confirmation(app: Flask, outbox: list) -> None:
    client = app.test_client()
    r = client.post(
        "/subscribe/quick",
        data={"email": "New@Example.com", "csrf_token": csrf(client)},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert r.status_code == 200
    sub = subscriber("new@example.com")
    assert sub is not None and sub.status == "pending"
    assert len(outbox) == 1


def test_the_task_retries_a_racing_insert_and_never_repeats_a_database_message(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    import workers.tasks
    from nurture.subscribers import signup

    calls: list[str] = []

    def racing(slug: str, form: signup.SignupForm, enqueue: Any) -> None:
        calls.append(form.email)
        raise IntegrityError("INSERT", {}, Exception(f"Key (email)=({form.email}) exists"))

    monkeypatch.setattr(signup, "sign_up", racing)
    with pytest.raises(workers.tasks.SignupFailed) as err:
        workers.tasks.sign_up.run("quick", signup.seal_form(signup.SignupForm("race@example.com")))
    assert calls == ["race@example.com", "race@example.com"]
    assert "race" not in str(err.value) and err.value.__cause__ is None


def test_under_the_embedded_broker_the_address_never_enters_the_broker(
    quick_sequence: str, clock: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The SQLAlchemy transport keeps delivered messages (until beat's tidy deletes them):
    the signup goes to a worker as it does on Redis, the same work for every address, and
    the broker's file holds only its sealed form."""
    # An absolute path: the transport keeps one engine per URL for the whole process.
    monkeypatch.setenv("NURTURE_BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    from tests.conftest import reload_runtime

    reload_runtime()
    from nurture.web.app import create_app

    client = create_app(current(), TESTING=True).test_client()
    r = client.post(
        "/subscribe/quick",
        data={"email": "emb@example.com", "first_name": "Embla", "csrf_token": csrf(client)},
    )
    assert r.status_code == 200
    r.close()  # what the server does once the answer is sent: nothing more happens here
    # Queued for a worker, not recorded on this connection: the next request on it cannot
    # wait for the lookup (which would take longer for one kind of address than the other).
    assert subscriber("emb@example.com") is None
    broker = (tmp_path / "broker.db").read_bytes()
    assert b"sign_up" in broker  # the task is there...
    assert b"emb@example.com" not in broker and b"Embla" not in broker  # ...sealed
