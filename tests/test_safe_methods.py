"""HEAD, GET and OPTIONS change nothing on any route (mail scanners send all three)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from nurture.context import current
from nurture.events.models import Event
from tests.cli_helpers import dump
from tests.conftest import reload_runtime
from tests.web_support import confirm_signup, count, drain, link_in, post_signup, unsubscribe_path


@pytest.fixture
def tracked_app(
    quick_sequence: str, clock: Any, eager_celery: None, db: str, monkeypatch: pytest.MonkeyPatch
) -> Flask:
    monkeypatch.setenv("NURTURE_TRACK_CLICKS", "true")
    monkeypatch.setenv("NURTURE_BOOKING_WEBHOOK_KEY", "booking-key-0123456789")
    monkeypatch.setenv("NURTURE_MAIL_WEBHOOK_SECRET", "mail-secret-0123456789")
    reload_runtime()
    from nurture.web.app import create_app

    return create_app(current(), TESTING=True)


def _paths(app: Flask, outbox: list) -> list[str]:
    """A real URL for every route of the app: tokens from real emails."""
    client = app.test_client()
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    step = outbox[-1]
    post_signup(client, "bo@example.com")
    pending_confirm = link_in(outbox[-1], "confirm")
    tracked = link_in(step, "l")
    values = {
        "slug": "quick",
        "provider": "postmark",
        # The dashboard's (tests/test_admin_web.py drives it logged in).
        "token": "setup-token",
        "public_id": "0" * 32,
        "action": "pause",
        "key": "welcome",
        "delivery_id": "1",
    }
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if rule.rule.startswith("/confirm/"):
            paths.append(pending_confirm)
        elif rule.rule.startswith("/unsubscribe/"):
            paths.append(unsubscribe_path(step))
        elif rule.rule.startswith("/l/"):
            paths.append(tracked)
        elif rule.rule.startswith("/break/"):
            paths.append(link_in(step, "break"))
        else:
            paths.append(re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule.rule))
    return paths


def test_head_get_and_options_change_nothing_on_any_route(
    tracked_app: Flask, outbox: list, db: str
) -> None:
    paths = _paths(tracked_app, outbox)
    assert any(p.startswith("/unsubscribe/") for p in paths)
    assert any(p.startswith("/l/") for p in paths)
    assert "/webhooks/booking" in paths
    client = tracked_app.test_client()
    before = dump(db)
    sent = len(outbox)
    for path in paths:
        for method in ("HEAD", "OPTIONS"):
            r = client.open(path, method=method)
            assert r.status_code < 500, (method, path)
        if not path.startswith("/l/"):  # a GET on a tracked link is a click, by design
            assert client.get(path).status_code < 500, path
    assert dump(db) == before
    assert len(outbox) == sent


def test_head_on_unsubscribe_link_unsubscribes_nobody(tracked_app: Flask, outbox: list) -> None:
    client = tracked_app.test_client()
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    r = client.head(unsubscribe_path(outbox[-1]))
    assert r.status_code == 200
    from tests.web_support import subscriber

    assert subscriber("ann@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_head_on_a_tracked_link_is_no_click(tracked_app: Flask, outbox: list) -> None:
    client = tracked_app.test_client()
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    link = link_in(outbox[-1], "l")
    assert client.head(link).status_code == 302
    assert count(Event, Event.kind == "clicked") == 0
    assert client.get(link).status_code == 302
    assert count(Event, Event.kind == "clicked") == 1


def test_one_click_post_still_unsubscribes(tracked_app: Flask, outbox: list) -> None:
    client = tracked_app.test_client()
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    r = client.post(
        unsubscribe_path(outbox[-1]),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200
    from tests.web_support import subscriber

    assert subscriber("ann@example.com").status == "unsubscribed"  # type: ignore[union-attr]
