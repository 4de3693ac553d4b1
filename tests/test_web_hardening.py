"""Hostile requests get 4xx, never a 500; a 500 logs no token; HSTS; the proxy hint."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.subscribers import confirmation
from tests.conftest import reload_runtime
from tests.web_support import link_in, post_signup

KEY = "whsec-test-key-0123"


@pytest.fixture
def hooked(
    monkeypatch: pytest.MonkeyPatch, quick_sequence: str, clock: FrozenClock, eager_celery: None
) -> Flask:
    monkeypatch.setenv("NURTURE_BOOKING_WEBHOOK_KEY", KEY)
    reload_runtime()
    from nurture.web.app import create_app

    return create_app(current(), TESTING=True)


@pytest.mark.parametrize(
    "headers",
    [
        {"Calendly-Webhook-Signature": "t=1,v1=\u00e9\u00e9\u00e9"},
        {"Calendly-Webhook-Signature": "t=\u00b9\u00b2,v1=abc"},
        {"X-Cal-Signature-256": "\u00e9" * 64},
        {"X-Cal-Signature-256": "sha256=\u00ff\u00fe"},
    ],
    ids=["calendly-latin1", "calendly-superscript-digits", "cal-latin1", "cal-prefixed"],
)
def test_non_ascii_signatures_are_refused_not_crashed(
    hooked: Flask, headers: dict[str, str]
) -> None:
    r = hooked.test_client().post("/webhooks/booking", data=b"{}", headers=headers)
    assert r.status_code == 401


@pytest.mark.parametrize("name", ["Calendly-Webhook-Signature", "X-Cal-Signature-256"])
def test_oversized_signatures_are_refused(hooked: Flask, name: str) -> None:
    r = hooked.test_client().post("/webhooks/booking", data=b"{}", headers={name: "a" * 5000})
    assert r.status_code == 400


def test_a_500_on_a_token_route_logs_no_token(
    quick_sequence: str,
    clock: FrozenClock,
    eager_celery: None,
    outbox: list,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nurture.web.app import create_app

    app = create_app(current())  # not TESTING: errors become 500 pages, as in production
    client = app.test_client()
    address = "private.person@example.com"
    post_signup(client, address)
    path = link_in(outbox[-1], "confirm")
    token = path.rsplit("/", 1)[1]

    def broken(*_: Any) -> Any:
        raise RuntimeError(" ".join(("boom", address, token)))

    monkeypatch.setattr(confirmation, "confirmation_state", broken)
    with caplog.at_level(logging.DEBUG):
        r = client.get(path)
    assert r.status_code == 500
    logged = caplog.text
    assert "/confirm/[token]" in logged and "RuntimeError" in logged
    assert token not in logged and token[:20] not in logged
    assert "private.person" not in logged
    assert token not in r.get_data(as_text=True)


def test_hsts_only_under_https(app: Flask) -> None:
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/subscribe/quick").headers
    secure = client.get("/subscribe/quick", base_url="https://nurture.test")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_https_behind_a_proxy_sends_hsts_with_proxy_hops(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_PROXY_HOPS", "1")
    reload_runtime()
    from nurture.web.app import create_app

    client = create_app(current(), TESTING=True).test_client()
    r = client.get(
        "/subscribe/quick", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"}
    )
    assert "Strict-Transport-Security" in r.headers


def test_forwarded_for_with_zero_hops_warns_once(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            client.get("/subscribe/quick", headers={"X-Forwarded-For": "203.0.113.7"})
    hints = [r for r in caplog.records if "NURTURE_PROXY_HOPS" in r.getMessage()]
    assert len(hints) == 1
    assert "203.0.113.7" not in caplog.text


def test_the_signup_limit_holds_across_web_workers(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two apps stand for two gunicorn workers of `nurture run` (embedded broker, no Redis):
    the limit is one budget for the whole install, not one per worker."""
    from nurture.web.app import create_app

    monkeypatch.setenv("NURTURE_BROKER_URL", "sqla+sqlite:///broker.db")
    reload_runtime()
    workers = [
        create_app(
            current(), TESTING=True, SIGNUP_RATE_LIMIT="3 per minute", ENQUEUE_CONFIRMATION=print
        )
        for _ in range(2)
    ]
    clients = [w.test_client() for w in workers]
    assert post_signup(clients[0], "a1@example.com").status_code == 200
    assert post_signup(clients[1], "a2@example.com").status_code == 200
    assert post_signup(clients[0], "a3@example.com").status_code == 200
    assert post_signup(clients[1], "a4@example.com").status_code == 429
    assert post_signup(clients[0], "a5@example.com").status_code == 429
