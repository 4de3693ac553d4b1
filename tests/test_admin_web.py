"""The dashboard through the real app (Flask's test client): off until an operator exists,
setup from the CLI's link, login with TOTP, sessions, CSRF, the pages with real data, each
action audited, and no reader's address where it does not belong."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture.admin.models import AuditEntry
from nurture.clock import FrozenClock
from nurture.db import reading, transaction
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import EnrollmentStatus, Subscriber, SubscriberStatus
from tests.admin_support import (
    PASSWORD,
    add_operator,
    current_code,
    form_csrf,
    log_in,
    session_csrf,
    set_up,
)
from tests.web_support import drain

ANN = "ann.reader@example.com"
PAGES = [
    "/admin/",
    "/admin/week",
    "/admin/readers",
    "/admin/sequences",
    "/admin/failed",
    "/admin/audit",
]


def _ready(client: FlaskClient, clock: FrozenClock) -> None:
    set_up(client, add_operator())
    clock.advance(timedelta(seconds=30))  # the setup spent this step's code
    assert log_in(client) == 303


def _ann() -> str:
    with transaction() as s:
        sub = add_subscriber(s, ANN, get_sequence(s, "quick"), first_name="Ann", confirmed=True)
        return sub.public_id


def test_off_until_an_operator_exists(client: FlaskClient) -> None:
    for path in ["/admin/", "/admin/login", "/admin/readers", "/admin/setup/x"]:
        assert client.get(path).status_code == 404
    add_operator()
    assert client.get("/admin/login").status_code == 200
    assert client.get("/admin/").status_code == 401


def test_setup_login_pages_and_logout(client: FlaskClient, clock: FrozenClock) -> None:
    path = add_operator()
    codes = set_up(client, path)
    assert len(codes) == 8
    # the link works once
    again = client.get(path)
    assert again.status_code == 400 and "not valid" in again.text
    clock.advance(timedelta(seconds=30))
    assert log_in(client) == 303
    cookie = client.get_cookie("nurture-admin")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    for page in PAGES:
        resp = client.get(page)
        assert resp.status_code == 200, page
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
    out = client.post("/admin/logout", data={"csrf_token": session_csrf(client)})
    assert out.status_code == 200
    assert client.get("/admin/").status_code == 401


def test_refusals_all_look_alike(client: FlaskClient, clock: FrozenClock) -> None:
    set_up(client, add_operator())
    clock.advance(timedelta(seconds=30))
    assert log_in(client, code="000000") == 401  # wrong code
    assert log_in(client, name="nobody", code="123456") == 401  # unknown operator
    page = client.get("/admin/login")
    wrong = client.post(
        "/admin/login",
        data={"csrf_token": form_csrf(page.text), "name": "robin", "password": "wrong" * 4},
    )
    unknown = client.post(
        "/admin/login",
        data={"csrf_token": form_csrf(page.text), "name": "ghost", "password": "wrong" * 4},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text
    # no CSRF token on the login form
    bare = client.post("/admin/login", data={"name": "robin", "password": PASSWORD})
    assert bare.status_code == 400


def test_unknown_name_takes_as_long_as_a_wrong_password(
    client: FlaskClient, clock: FrozenClock
) -> None:
    set_up(client, add_operator())
    token = form_csrf(client.get("/admin/login").text)

    def timed(name: str) -> float:
        clock.advance(timedelta(hours=1))  # past any wait: every try is really tried
        t = time.perf_counter()
        client.post("/admin/login", data={"csrf_token": token, "name": name, "password": "x"})
        return time.perf_counter() - t

    for _ in range(2):  # warm up
        timed("robin"), timed("ghost")
    known = sorted(timed("robin") for _ in range(3))[1]
    unknown = sorted(timed("ghost") for _ in range(3))[1]
    # both pay one argon2 verification; without it the unknown name would be ~100x faster
    assert unknown > known / 3


def test_expired_session_and_missing_csrf_change_nothing(
    client: FlaskClient, clock: FrozenClock
) -> None:
    _ready(client, clock)
    public_id = _ann()
    csrf = session_csrf(client)
    bare = client.post(f"/admin/readers/{public_id}/unsubscribe", data={})
    assert bare.status_code == 400 and "expired" in bare.text
    clock.advance(timedelta(minutes=31))  # idle too long
    late = client.post(f"/admin/readers/{public_id}/unsubscribe", data={"csrf_token": csrf})
    assert late.status_code == 401 and "session has ended" in late.text
    with reading() as s:
        assert s.scalar(select(Subscriber.status)) == SubscriberStatus.CONFIRMED


def test_absolute_timeout_even_when_busy(client: FlaskClient, clock: FrozenClock) -> None:
    _ready(client, clock)
    for _ in range(25):  # 25 x 29 minutes: never idle for 30, but past 12 hours
        clock.advance(timedelta(minutes=29))
        resp = client.get("/admin/")
    assert resp.status_code == 401


def test_each_reader_action_asks_once_and_is_audited(
    client: FlaskClient, clock: FrozenClock, outbox: list
) -> None:
    _ready(client, clock)
    public_id = _ann()
    drain()
    timeline = client.get(f"/admin/readers/{public_id}")
    assert ANN in timeline.text and "email sent" in timeline.text
    for action in ["pause", "resume", "booked", "unsubscribe"]:
        ask = client.get(f"/admin/readers/{public_id}/{action}")
        assert ask.status_code == 200 and "Please confirm" in ask.text
        done = client.post(
            f"/admin/readers/{public_id}/{action}", data={"csrf_token": form_csrf(ask.text)}
        )
        assert done.status_code == 303, action
    ask = client.get(f"/admin/readers/{public_id}/forget")
    gone = client.post(
        f"/admin/readers/{public_id}/forget", data={"csrf_token": form_csrf(ask.text)}
    )
    assert gone.status_code == 200 and "forgotten" in gone.text
    with reading() as s:
        assert s.scalar(select(Subscriber)) is None
        entries = [
            (e.action, e.subscriber_id is not None)
            for e in s.scalars(
                select(AuditEntry).where(AuditEntry.action.like("reader %")).order_by(AuditEntry.id)
            )
        ]
    assert entries == [
        ("reader pause", True),
        ("reader resume", True),
        ("reader booked", True),
        ("reader unsubscribe", True),
        ("reader forget", True),
    ]
    audit = client.get("/admin/audit").text
    assert "reader forget" in audit and ANN not in audit


def test_take_out_and_resend_confirmation(
    client: FlaskClient, clock: FrozenClock, outbox: list
) -> None:
    _ready(client, clock)
    with transaction() as s:
        pending = add_subscriber(s, "pat@example.com", get_sequence(s, "quick"))
        pid = pending.public_id
    before = len(outbox)
    csrf = session_csrf(client)
    sent = client.post(f"/admin/readers/{pid}/resend-confirmation", data={"csrf_token": csrf})
    assert sent.status_code == 303
    assert len(outbox) == before + 1
    out = client.post(
        f"/admin/readers/{pid}/take-out", data={"csrf_token": csrf, "sequence": "quick"}
    )
    assert out.status_code == 303 and "taken+out" in out.headers["Location"]
    with reading() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.public_id == pid))
        assert sub is not None and sub.enrollments[0].status == EnrollmentStatus.CANCELLED


def test_search_by_exact_address_is_a_post(client: FlaskClient, clock: FrozenClock) -> None:
    _ready(client, clock)
    public_id = _ann()
    csrf = session_csrf(client)
    found = client.post(
        "/admin/readers", data={"csrf_token": csrf, "email": "ANN.reader@example.com"}
    )
    assert found.status_code == 303 and found.headers["Location"].endswith(public_id)
    missing = client.post("/admin/readers", data={"csrf_token": csrf, "email": "ann@example.com"})
    assert missing.status_code == 200 and "No reader has that address" in missing.text
    listing = client.get("/admin/readers?status=confirmed")
    assert ANN in listing.text


def test_no_address_on_other_pages_or_in_logs(
    client: FlaskClient, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _ready(client, clock)
    _ann()
    drain()
    for page in ["/admin/", "/admin/week", "/admin/sequences", "/admin/failed", "/admin/audit"]:
        assert ANN not in client.get(page).text, page
    assert ANN not in caplog.text


def test_sequence_actions_and_step_preview(client: FlaskClient, clock: FrozenClock) -> None:
    _ready(client, clock)
    page = client.get("/admin/sequences")
    frames = re.findall(r'<iframe class="preview" sandbox="" [^>]*src="([^"]+)"', page.text)
    assert frames
    preview = client.get(frames[0])
    assert preview.status_code == 200 and "<html" in preview.text.lower()
    assert "sandbox" in preview.headers["Content-Security-Policy"]
    csrf = session_csrf(client)
    for action in ["pause", "resume", "archive"]:
        r = client.post(f"/admin/sequences/quick/{action}", data={"csrf_token": csrf})
        assert r.status_code == 303
    with reading() as s:
        assert get_sequence(s, "quick").archived_at is not None
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions[-3:] == ["sequence pause", "sequence resume", "sequence archive"]


def test_get_and_head_change_nothing_when_logged_in(
    client: FlaskClient, clock: FrozenClock, db: str
) -> None:
    """Every dashboard page and every confirmation page, read by a logged-in operator: only
    the session's last-seen time moves."""
    from tests.cli_helpers import dump

    _ready(client, clock)
    public_id = _ann()
    drain()
    paths = [*PAGES, f"/admin/readers/{public_id}", "/admin/sequences/quick/steps/one"]
    paths += [f"/admin/readers/{public_id}/{a}" for a in ("pause", "unsubscribe", "forget")]
    paths += [
        "/admin/sequences/quick/archive",
        f"/admin/readers/{public_id}/take-out?sequence=quick",
    ]
    before = dump(db)
    before.pop("operator_sessions")
    for path in paths:
        for method in ("GET", "HEAD"):
            assert client.open(path, method=method).status_code == 200, (method, path)
    after = dump(db)
    after.pop("operator_sessions")
    assert after == before


def test_remove_and_reset_end_the_operators_sessions(
    client: FlaskClient, clock: FrozenClock
) -> None:
    from tests.cli_helpers import run

    _ready(client, clock)
    add_operator("sam")  # someone stays, so the dashboard stays on
    assert client.get("/admin/").status_code == 200
    assert run("operators", "reset", "robin").code == 0
    assert client.get("/admin/").status_code == 401
    set_up(client, add_operator("kim"), "kim")
    clock.advance(timedelta(seconds=30))
    assert log_in(client, "kim") == 303
    assert run("operators", "remove", "kim").code == 0
    assert client.get("/admin/").status_code == 401
    assert log_in(client, "kim", code="123456") == 401


def test_under_https_the_cookie_is_secure_and_host_only(
    client: FlaskClient, clock: FrozenClock
) -> None:
    https = "https://nurture.test"
    path = add_operator()
    page = client.get(path, base_url=https)
    code = current_code()
    done = client.post(
        path,
        base_url=https,
        data={"csrf_token": form_csrf(page.text), "password": PASSWORD, "code": code},
    )
    assert done.status_code == 200
    clock.advance(timedelta(seconds=30))
    login = client.get("/admin/login", base_url=https)
    resp = client.post(
        "/admin/login",
        base_url=https,
        data={
            "csrf_token": form_csrf(login.text),
            "name": "robin",
            "password": PASSWORD,
            "code": current_code(),
        },
    )
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("__Host-nurture-admin=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    assert client.get("/admin/", base_url=https).status_code == 200
