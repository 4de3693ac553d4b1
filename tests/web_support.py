"""Fixtures and helpers shared by the tests of the subscriber's pages (tests/test_web_*.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.sending import send_batch
from nurture.runtime import Runtime
from nurture.subscribers.addresses import email_index
from nurture.subscribers.models import Subscriber

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def eager_celery(runtime: Runtime) -> Iterator[None]:
    """Run Celery tasks in-process, so the real enqueue path sends into the memory outbox."""
    import workers.tasks  # noqa: F401  (registers the tasks, as a worker's `include` does)

    celery = runtime.celery

    before = (celery.conf.task_always_eager, celery.conf.task_eager_propagates)
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    yield
    celery.conf.task_always_eager, celery.conf.task_eager_propagates = before


@pytest.fixture
def app(quick_sequence: str, clock: Any, eager_celery: None) -> Flask:
    from nurture.web.app import create_app

    return create_app(current(), TESTING=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf(client: FlaskClient, slug: str = "quick", path: str = "subscribe") -> str:
    page = client.get(f"/{path}/{slug}").get_data(as_text=True)
    match = TOKEN.search(page)
    assert match, "the form has a csrf_token field"
    return match.group(1)


def post_signup(client: FlaskClient, email: str, slug: str = "quick", **fields: str) -> Any:
    data = {"email": email, "first_name": "", "timezone": "", "website": ""}
    data["csrf_token"] = csrf(client, slug)
    data.update(fields)
    return client.post(f"/subscribe/{slug}", data=data)


def link_in(msg: EmailMessage, path: str) -> str:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(rf"https?://\S+(/{path}/[A-Za-z0-9._-]+)", text)
    assert match, f"no /{path}/ link in the email"
    return match.group(1)


def unsubscribe_path(msg: EmailMessage) -> str:
    header = str(msg["List-Unsubscribe"])
    match = re.search(r"<https?://[^/>]+(/unsubscribe/[^>]+)>", header)
    assert match
    return match.group(1)


def drain() -> list[int]:
    sent: list[int] = []
    dispatch_once(lambda ids: sent.extend(send_batch(ids).sent))
    return sent


def count(model: Any, *where: Any) -> int:
    with transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def subscriber(email: str) -> Subscriber | None:
    with transaction() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_index == email_index(email)))
        if sub is not None:
            s.expunge(sub)
        return sub


def confirm_signup(client: FlaskClient, outbox: list, email: str) -> None:
    """Sign up and press the confirm button: a confirmed, enrolled subscriber."""
    before = len(outbox)
    assert post_signup(client, email).status_code == 200
    assert len(outbox) == before + 1
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
