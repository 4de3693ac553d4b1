"""Control characters (NUL and friends) are stripped at every entrance, with one answer for all."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from nurture.clock import FrozenClock
from nurture.context import current
from tests.cli_helpers import run
from tests.conftest import reload_runtime
from tests.web_support import confirm_signup, post_signup, subscriber

NASTY = "\x00\x01\x1b\x7f\x9b"


def test_form_strips_controls_and_answers_alike(client: FlaskClient, outbox: list) -> None:
    confirm_signup(client, outbox, "known@example.com")
    known = post_signup(client, "known@example.com", first_name=f"Ki{NASTY}m")
    new = post_signup(client, f"new{NASTY}@example.com", first_name=f"Ne{NASTY}w\x00")
    assert known.status_code == new.status_code == 200
    assert known.get_data() == new.get_data()
    sub = subscriber("new@example.com")
    assert sub is not None and sub.first_name == "New"


def test_cli_add_strips_controls(quick_sequence: str, clock: FrozenClock) -> None:
    ran = run(
        "subscribers", "add", f"ann{NASTY}@example.com", "--sequence", "quick",
        "--name", f"An{NASTY}n", "--timezone", "Europe/Paris\x00",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    sub = subscriber("ann@example.com")
    assert sub is not None and (sub.first_name, sub.timezone) == ("Ann", "Europe/Paris")


def test_csv_import_strips_controls(quick_sequence: str, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        f"email,first_name,timezone\nbo{NASTY}b@example.com,Bo{NASTY}b,Asia/Tokyo\x00\n",
        encoding="utf-8",
    )
    ran = run("subscribers", "import", str(path), "--sequence", "quick")
    assert ran.code == 0, ran.err
    sub = subscriber("bob@example.com")
    assert sub is not None and (sub.first_name, sub.timezone) == ("Bob", "Asia/Tokyo")


@pytest.fixture
def hooked(
    monkeypatch: pytest.MonkeyPatch, quick_sequence: str, clock: FrozenClock, eager_celery: None
) -> Flask:
    monkeypatch.setenv("NURTURE_BOOKING_WEBHOOK_KEY", "booking-key-0123")
    reload_runtime()
    from nurture.web.app import create_app

    return create_app(current(), TESTING=True)


def test_webhook_strips_controls(hooked: Flask, outbox: list) -> None:
    client = hooked.test_client()
    confirm_signup(client, outbox, "ann@example.com")
    body = json.dumps(
        {
            "triggerEvent": "BOOKING_CREATED",
            "payload": {"attendees": [{"email": "a\x00nn@example.com"}]},
        }
    ).encode()
    sig = hmac.new(b"booking-key-0123", body, hashlib.sha256).hexdigest()
    r = client.post("/webhooks/booking", data=body, headers={"X-Cal-Signature-256": sig})
    assert r.status_code == 200
    sub = subscriber("ann@example.com")
    assert sub is not None and sub.booked_at is not None
