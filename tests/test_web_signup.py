"""GET/POST /subscribe/<slug> and /embed/<slug>: form, CSRF, honeypot, limits, no enumeration."""

from __future__ import annotations

import logging
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture import tokens
from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.errors import NotFound
from nurture.subscribers import signup
from nurture.subscribers.models import Consent, Enrollment, EnrollmentStatus, Subscriber
from nurture.web import forms
from tests.conftest import ROOT
from tests.web_support import (
    confirm_signup,
    count,
    csrf,
    link_in,
    post_signup,
    subscriber,
    unsubscribe_path,
)


def test_signup_page_is_accessible_and_changes_nothing(client: FlaskClient) -> None:
    r = client.get("/subscribe/quick")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert '<label for="email">' in html and 'id="email"' in html
    assert '<label for="first_name">' in html
    assert 'name="timezone"' in html and 'name="website"' in html
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in html
    assert signup.CONSENT_TEXT.split("{")[0] in html
    assert '<html lang="en">' in html
    # No external resources, no cookies.
    assert not re.search(r"""(src|href)=["']https?://""", html)
    assert "Set-Cookie" not in r.headers
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "http" not in csp and "unsafe-inline" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert count(Subscriber) == 0 and count(Consent) == 0


def test_embed_may_be_framed_and_knows_its_article(client: FlaskClient) -> None:
    r = client.get(
        "/embed/quick", headers={"Referer": "https://blog.example.org/articles/one?utm=x#top"}
    )
    assert r.status_code == 200
    assert "frame-ancestors *" in r.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in r.headers
    html = r.get_data(as_text=True)
    assert 'value="https://blog.example.org/articles/one"' in html  # no query, no fragment
    assert 'action="/embed/quick"' in html
    token = csrf(client, path="embed")
    posted = client.post(
        "/embed/quick",
        data={
            "email": "embed@example.com",
            "csrf_token": token,
            "article": "https://blog.example.org/articles/one",
        },
    )
    assert posted.status_code == 200
    assert "frame-ancestors *" in posted.headers["Content-Security-Policy"]
    with transaction() as s:
        consent = s.scalars(select(Consent)).one()
        assert consent.article == "https://blog.example.org/articles/one"


def test_unknown_sequence_is_404(client: FlaskClient) -> None:
    assert client.get("/subscribe/nope").status_code == 404
    assert client.get("/embed/nope").status_code == 404
    token = forms.form_token("nope")
    r = client.post("/subscribe/nope", data={"email": "a@example.com", "csrf_token": token})
    assert r.status_code == 404
    assert "Page not found" in r.get_data(as_text=True)


def test_signup_records_consent_and_sends_one_confirmation(
    client: FlaskClient, outbox: list, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.get("/subscribe/quick?article=/articles/partner-refuses")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.get_data(as_text=True))
    assert token
    r = client.post(
        "/subscribe/quick",
        data={
            "email": "  Reader@Example.COM ",
            "first_name": "Ann",
            "timezone": "Europe/Paris",
            "website": "",
            "csrf_token": token.group(1),
            "article": "/articles/partner-refuses",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert r.status_code == 200
    assert "Check your inbox" in r.get_data(as_text=True)
    sub = subscriber("reader@example.com")
    assert sub is not None and sub.status == "pending"
    assert sub.first_name == "Ann" and sub.timezone == "Europe/Paris"
    with transaction() as s:
        consent = s.scalars(select(Consent)).one()
        assert consent.source == "web-form"
        assert consent.article == "/articles/partner-refuses"
        assert consent.consent_version == signup.CONSENT_VERSION
        assert "Quick test sequence" in consent.consent_text
        assert consent.client_hash and "203.0.113.7" not in consent.client_hash
        assert consent.client_hash == signup.client_hash("203.0.113.7")
        assert consent.confirmed_at is None
        enrollment = s.scalars(select(Enrollment)).one()
        assert enrollment.status == EnrollmentStatus.PENDING
    assert len(outbox) == 1
    msg = outbox[0]
    # No greeting by the typed name, in the To header or the body: it may be a stranger's.
    assert msg["To"] == "reader@example.com"
    assert "Ann" not in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert msg["Subject"] == "Please confirm: Quick test sequence"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_body(("html",)) is not None
    assert link_in(msg, "confirm").startswith("/confirm/")
    assert "reader@example.com" not in caplog.text.lower()
    assert "203.0.113.7" not in caplog.text


def _answers(web: FlaskClient, email: str) -> bytes:
    r = post_signup(web, email)
    assert r.status_code == 200
    # The answer page holds no token today; strip one anyway should it ever gain a form.
    return re.sub(rb'name="csrf_token" value="[^"]*"', b"", r.data)


def test_same_answer_for_every_kind_of_address(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    confirm_signup(client, outbox, "confirmed@example.com")
    confirm_signup(client, outbox, "left@example.com")
    assert client.post(unsubscribe_path(outbox[-1])).status_code == 200
    post_signup(client, "pending@example.com")
    clock.advance(timedelta(minutes=1))

    unknown = _answers(client, "new@example.com")
    assert _answers(client, "pending@example.com") == unknown
    assert _answers(client, "confirmed@example.com") == unknown
    assert _answers(client, "left@example.com") == unknown
    assert _answers(client, "NEW@example.com") == unknown  # now pending, same answer again


def test_honeypot_gets_the_same_page_and_nothing_happens(client: FlaskClient, outbox: list) -> None:
    normal = post_signup(client, "human@example.com").data
    r = post_signup(client, "bot@example.com", website="http://spam.example")
    assert r.status_code == 200 and r.data == normal
    assert subscriber("bot@example.com") is None
    assert len(outbox) == 1  # only the human's confirmation


@pytest.mark.parametrize(
    "token",
    [None, "", "garbage", "tampered", "other-slug"],
)
def test_missing_or_bad_csrf_token_is_refused(client: FlaskClient, token: str | None) -> None:
    data = {"email": "a@example.com"}
    if token == "tampered":
        good = csrf(client)
        data["csrf_token"] = good[:-2] + ("aa" if not good.endswith("aa") else "bb")
    elif token == "other-slug":
        data["csrf_token"] = forms.form_token("another")
    elif token is not None:
        data["csrf_token"] = token
    r = client.post("/subscribe/quick", data=data)
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "This form had expired" in html
    assert 'value="a@example.com"' in html  # what they typed is kept
    assert count(Subscriber) == 0


def test_expired_csrf_token_is_refused(client: FlaskClient, clock: FrozenClock) -> None:
    token = csrf(client)
    clock.advance(timedelta(hours=13))
    r = client.post("/subscribe/quick", data={"email": "a@example.com", "csrf_token": token})
    assert r.status_code == 400
    assert count(Subscriber) == 0


def test_foreign_origin_is_refused(client: FlaskClient) -> None:
    data = {"email": "a@example.com", "csrf_token": csrf(client)}
    r = client.post("/subscribe/quick", data=data, headers={"Origin": "https://evil.example"})
    assert r.status_code == 400
    ours = client.post("/subscribe/quick", data=data, headers={"Origin": "https://nurture.test"})
    assert ours.status_code == 200


@pytest.mark.parametrize("email", ["", "not-an-address", "a@", "a b@example.com"])
def test_invalid_email_shows_the_form_again(client: FlaskClient, outbox: list, email: str) -> None:
    r = post_signup(client, email)
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert 'role="alert"' in html and "Please check the email address" in html
    assert 'name="csrf_token"' in html  # a fresh token to send it again
    assert count(Subscriber) == 0 and outbox == []


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "x" * 200])
def test_unknown_time_zone_falls_back_to_the_sequence(client: FlaskClient, tz: str) -> None:
    assert post_signup(client, "tz@example.com", timezone=tz).status_code == 200
    sub = subscriber("tz@example.com")
    # None: scheduling uses the sequence's zone (America/New_York) for this person.
    assert sub is not None and sub.timezone is None


def test_rate_limit_per_client_address(quick_sequence: str, clock: FrozenClock) -> None:
    from nurture.web.app import create_app

    limited = create_app(
        current(), TESTING=True, SIGNUP_RATE_LIMIT="3 per minute", ENQUEUE_CONFIRMATION=print
    )
    client = limited.test_client()
    for i in range(3):
        assert post_signup(client, f"r{i}@example.com").status_code == 200
    r = post_signup(client, "r4@example.com")
    assert r.status_code == 429
    assert "Please wait a moment" in r.get_data(as_text=True)
    assert subscriber("r4@example.com") is None
    # Another address is not limited; pages stay readable.
    other = client.post(
        "/subscribe/quick",
        data={"email": "r5@example.com", "csrf_token": csrf(client)},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )
    assert other.status_code == 200
    assert client.get("/subscribe/quick").status_code == 200


def test_a_rolled_back_signup_sends_nothing(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(signup, "record_event", broken)
    with pytest.raises(RuntimeError):
        signup.sign_up("quick", signup.SignupForm(email="a@example.com"), queued.append)
    assert queued == []
    assert count(Subscriber) == 0


def test_confirmation_is_queued_only_after_commit(quick_sequence: str, clock: FrozenClock) -> None:
    seen: list[int] = []

    def enqueue(consent_id: int) -> None:
        # Another connection (a worker) must already see the committed signup.
        with transaction() as s:
            assert s.get(Consent, consent_id) is not None
        seen.append(consent_id)

    signup.sign_up("quick", signup.SignupForm(email="a@example.com"), enqueue)
    assert len(seen) == 1
    with pytest.raises(NotFound):
        signup.sign_up("nope", signup.SignupForm(email="a@example.com"), enqueue)


def test_repeated_signups_do_not_flood_an_inbox(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    for _ in range(3):
        post_signup(client, "target@example.com")
    assert len(outbox) == 1
    clock.advance(signup.RESEND_AFTER + timedelta(minutes=1))
    post_signup(client, "target@example.com")
    assert len(outbox) == 2
    # Either link confirms.
    assert client.post(link_in(outbox[0], "confirm")).status_code == 200
    assert subscriber("target@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_a_strangers_form_cannot_rename_a_confirmed_subscriber(
    client: FlaskClient, outbox: list
) -> None:
    post_signup(client, "kim@example.com", first_name="Kim", timezone="Europe/Berlin")
    client.post(link_in(outbox[-1], "confirm"))
    post_signup(client, "kim@example.com", first_name="Someone Else", timezone="Asia/Tokyo")
    sub = subscriber("kim@example.com")
    assert sub is not None
    assert (sub.first_name, sub.timezone) == ("Kim", "Europe/Berlin")
    assert len(outbox) == 1  # already enrolled: nothing to confirm


def test_form_token_is_bound_to_its_purpose(quick_sequence: str) -> None:
    token = forms.form_token("quick")
    with pytest.raises(tokens.BadToken):
        tokens.read(tokens.CONFIRM, token)
    assert forms.check_form_token("quick", token)
    assert not forms.check_form_token("other", token)


def test_clean_article() -> None:
    assert signup.clean_article("https://x.org/a/b?email=me@x.org#f") == "https://x.org/a/b"
    assert signup.clean_article("/blog/post?q=1") == "/blog/post"
    assert signup.clean_article("javascript:alert(1)") is None
    assert signup.clean_article("") is None


def test_templates_found_from_elsewhere(
    quick_sequence: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run from another directory (settings_env chdirs to a temp dir), templates/ is still
    found beside the package; NURTURE_TEMPLATES_DIR points elsewhere when installed."""
    from nurture.paths import templates_dir
    from nurture.web.app import create_app
    from tests.conftest import reload_runtime

    assert Path.cwd() != ROOT
    other: Flask = create_app(current(), TESTING=True)
    assert other.test_client().get("/subscribe/quick").status_code == 200
    copy = tmp_path / "tpl"
    shutil.copytree(ROOT / "templates", copy)
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(copy))
    reload_runtime()
    assert templates_dir() == copy.resolve()


def test_rate_limiter_survives_garbage_collection(quick_sequence: str, clock: FrozenClock) -> None:
    """The limits keep only a weak reference to their limiter (it crashed under gunicorn)."""
    import gc

    from nurture.web.app import create_app

    fresh = create_app(current(), TESTING=True, ENQUEUE_CONFIRMATION=print)
    gc.collect()
    assert post_signup(fresh.test_client(), "gc@example.com").status_code == 200


def test_the_home_page_lists_the_open_forms(client: FlaskClient) -> None:
    # `nurture run` prints its address: opening it must not answer "Page not found".
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert '<a href="/subscribe/quick">Quick test sequence</a>' in html
    assert "Test Practice" in html and "Page not found" not in html
    assert client.get("/subscribe/quick").status_code == 200
    with transaction() as s:
        from nurture.sequences.archive import archive

        archive(s, "quick", stop=False)
    closed = client.get("/").get_data(as_text=True)
    assert "/subscribe/quick" not in closed and "no email series to sign up for" in closed
