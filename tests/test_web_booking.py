"""POST /webhooks/booking: Calendly and Cal.com bookings end the sequence; forgeries do not."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.subscribers.models import Enrollment, EnrollmentStatus
from tests.conftest import FIXTURES, reload_runtime
from tests.web_support import confirm_signup, drain, subscriber

KEY = "whsec-test-key"
CALENDLY = (FIXTURES / "webhooks" / "calendly_invitee_created.json").read_bytes()
CAL = (FIXTURES / "webhooks" / "cal_booking_created.json").read_bytes()


@pytest.fixture
def hooked(
    monkeypatch: pytest.MonkeyPatch, quick_sequence: str, clock: FrozenClock, eager_celery: None
) -> FlaskClient:
    monkeypatch.setenv("NURTURE_BOOKING_WEBHOOK_KEY", KEY)
    reload_runtime()
    from nurture.web.app import create_app

    app: Flask = create_app(current(), TESTING=True)
    return app.test_client()


def calendly_headers(body: bytes, ts: int, key: str = KEY) -> dict[str, str]:
    sig = hmac.new(key.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Calendly-Webhook-Signature": f"t={ts},v1={sig}", "Content-Type": "application/json"}


def cal_headers(body: bytes, key: str = KEY) -> dict[str, str]:
    sig = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Cal-Signature-256": sig, "Content-Type": "application/json"}


def _enrolled(client: FlaskClient, outbox: list) -> None:
    confirm_signup(client, outbox, "ann@example.com")
    assert len(drain()) == 1  # step one


def _status() -> Any:
    sub = subscriber("ann@example.com")
    assert sub is not None
    with transaction() as s:
        status = s.scalars(select(Enrollment.status)).one()
    return sub.booked_at, status


def _nothing_more_is_sent(clock: FrozenClock, outbox: list) -> None:
    before = len(outbox)
    for _ in range(5):
        clock.advance(timedelta(minutes=2))
        drain()
    assert len(outbox) == before


def test_webhook_is_off_without_a_key(client: FlaskClient) -> None:
    now = 1772805600
    assert (
        client.post(
            "/webhooks/booking", data=CALENDLY, headers=calendly_headers(CALENDLY, now)
        ).status_code
        == 404
    )


def test_calendly_invitee_created_stops_the_sequence(
    hooked: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    _enrolled(hooked, outbox)
    ts = int(clock.now().timestamp())
    r = hooked.post("/webhooks/booking", data=CALENDLY, headers=calendly_headers(CALENDLY, ts))
    assert r.status_code == 200 and r.json == {"result": "booked"}
    booked_at, status = _status()
    assert booked_at == clock.now() and status == EnrollmentStatus.BOOKED
    _nothing_more_is_sent(clock, outbox)
    # A replay (Calendly retries) changes nothing.
    ts = int(clock.now().timestamp())
    again = hooked.post("/webhooks/booking", data=CALENDLY, headers=calendly_headers(CALENDLY, ts))
    assert again.status_code == 202
    assert _status()[0] == booked_at


def test_cal_com_booking_created_stops_the_sequence(
    hooked: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    _enrolled(hooked, outbox)
    r = hooked.post("/webhooks/booking", data=CAL, headers=cal_headers(CAL))
    assert r.status_code == 200
    assert _status()[1] == EnrollmentStatus.BOOKED
    _nothing_more_is_sent(clock, outbox)
    assert hooked.post("/webhooks/booking", data=CAL, headers=cal_headers(CAL)).status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        calendly_headers(CALENDLY, 0, key="wrong-key"),
        cal_headers(CAL, key="wrong-key"),
        {"Calendly-Webhook-Signature": "garbage"},
        {"X-Cal-Signature-256": ""},
    ],
    ids=["unsigned", "calendly-wrong-key", "cal-wrong-key", "calendly-garbage", "cal-empty"],
)
def test_bad_signatures_change_nothing(
    hooked: FlaskClient, outbox: list, clock: FrozenClock, headers: dict[str, str]
) -> None:
    _enrolled(hooked, outbox)
    if "Calendly-Webhook-Signature" in headers and "t=0" in headers["Calendly-Webhook-Signature"]:
        headers = calendly_headers(CALENDLY, int(clock.now().timestamp()), key="wrong-key")
    body = CAL if "X-Cal-Signature-256" in headers else CALENDLY
    r = hooked.post("/webhooks/booking", data=body, headers=headers)
    assert r.status_code == 401
    assert _status() == (None, EnrollmentStatus.ACTIVE)


def test_tampered_body_changes_nothing(
    hooked: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    _enrolled(hooked, outbox)
    ts = int(clock.now().timestamp())
    headers = calendly_headers(CALENDLY, ts)
    other = CALENDLY.replace(b"ann@example.com", b"bob@example.com")
    assert hooked.post("/webhooks/booking", data=other, headers=headers).status_code == 401
    assert (
        hooked.post("/webhooks/booking", data=CAL + b" ", headers=cal_headers(CAL)).status_code
        == 401
    )
    assert _status() == (None, EnrollmentStatus.ACTIVE)


@pytest.mark.parametrize("skew", [-301, -3600, 301])
def test_stale_calendly_timestamp_is_refused(
    hooked: FlaskClient, outbox: list, clock: FrozenClock, skew: int
) -> None:
    _enrolled(hooked, outbox)
    ts = int(clock.now().timestamp()) + skew
    r = hooked.post("/webhooks/booking", data=CALENDLY, headers=calendly_headers(CALENDLY, ts))
    assert r.status_code == 401
    assert _status() == (None, EnrollmentStatus.ACTIVE)


def test_unknown_address_and_other_events_are_acknowledged(
    hooked: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    _enrolled(hooked, outbox)
    ts = int(clock.now().timestamp())
    stranger = CALENDLY.replace(b"ann@example.com", b"stranger@example.com")
    r = hooked.post("/webhooks/booking", data=stranger, headers=calendly_headers(stranger, ts))
    assert r.status_code == 202
    canceled = json.loads(CALENDLY)
    canceled["event"] = "invitee.canceled"
    body = json.dumps(canceled).encode()
    assert (
        hooked.post("/webhooks/booking", data=body, headers=calendly_headers(body, ts)).status_code
        == 202
    )
    not_json = b"not json"
    assert (
        hooked.post("/webhooks/booking", data=not_json, headers=cal_headers(not_json)).status_code
        == 400
    )
    assert _status() == (None, EnrollmentStatus.ACTIVE)
