"""GET /l/<token>: redirects only to stored URLs; clicks count only while tracking is on."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture import tokens
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery, Link
from nurture.events.models import Event
from nurture.sequences.editing import apply_spec
from nurture.sequences.spec import load_folder
from tests.conftest import reload_runtime
from tests.web_support import confirm_signup, count, drain


def _client(monkeypatch: pytest.MonkeyPatch, clock: object, track: bool) -> FlaskClient:
    monkeypatch.setenv("NURTURE_TRACK_CLICKS", "true" if track else "false")
    reload_runtime()
    from nurture.web.app import create_app

    app: Flask = create_app(current(), TESTING=True)
    return app.test_client()


def _consult_href(msg: EmailMessage) -> str:
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    hrefs = re.findall(r'href="([^"]+)"', html)
    consult = [h for h in hrefs if "unsubscribe" not in h]
    assert consult
    return consult[0]


@pytest.fixture
def tracked(
    monkeypatch: pytest.MonkeyPatch, quick_sequence: str, clock: object, eager_celery: None
) -> FlaskClient:
    return _client(monkeypatch, clock, track=True)


def test_tracked_consult_link_redirects_and_counts_the_click(
    tracked: FlaskClient, outbox: list
) -> None:
    confirm_signup(tracked, outbox, "ann@example.com")
    drain()
    href = _consult_href(outbox[-1])
    assert href.startswith("https://nurture.test/l/")
    path = href.removeprefix("https://nurture.test")
    r = tracked.get(path)
    assert r.status_code == 302 and r.location == "https://example.org/book"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    with transaction() as s:
        event = s.scalars(select(Event).where(Event.kind == "clicked")).one()
        delivery = s.scalars(select(Delivery)).one()
        assert (event.delivery_id, event.step_id) == (delivery.id, delivery.step_id)
        assert event.subscriber_id is not None and event.sequence_id is not None
        assert event.data == {"consult": True}
        link = s.scalars(select(Link)).one()
        assert link.is_consult and link.delivery_id == delivery.id


def test_untracked_links_go_straight_to_their_target(
    monkeypatch: pytest.MonkeyPatch,
    quick_sequence: str,
    clock: object,
    eager_celery: None,
    outbox: list,
) -> None:
    client = _client(monkeypatch, clock, track=False)
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    assert _consult_href(outbox[-1]) == "https://example.org/book"
    assert count(Link) == 0


def test_a_sequence_may_turn_tracking_off(tracked: FlaskClient, outbox: list) -> None:
    from tests.conftest import FIXTURES

    spec = load_folder(FIXTURES / "sequences" / "quick").model_copy(
        update={"tracking": {"clicks": False}}
    )
    with transaction() as s:
        apply_spec(s, spec)
    confirm_signup(tracked, outbox, "ann@example.com")
    drain()
    assert _consult_href(outbox[-1]) == "https://example.org/book"


def test_stored_link_keeps_working_when_tracking_is_turned_off(
    tracked: FlaskClient, outbox: list, monkeypatch: pytest.MonkeyPatch, clock: object
) -> None:
    confirm_signup(tracked, outbox, "ann@example.com")
    drain()
    path = _consult_href(outbox[-1]).removeprefix("https://nurture.test")
    untracked = _client(monkeypatch, clock, track=False)
    r = untracked.get(path)
    assert r.status_code == 302 and r.location == "https://example.org/book"
    assert count(Event, Event.kind == "clicked") == 0


def test_no_open_redirect(tracked: FlaskClient, outbox: list) -> None:
    confirm_signup(tracked, outbox, "ann@example.com")
    drain()
    token = _consult_href(outbox[-1]).rsplit("/", 1)[1]
    # Another next-to-last character, whatever it was (a token ending "zz" once made the
    # tampered token the real one); the last base64 character may carry unused bits only.
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert tracked.get(f"/l/{tampered}").status_code == 400
    assert tracked.get("/l/https%3A%2F%2Fevil.example").status_code == 404  # no such route
    assert tracked.get("/l/evil.example").status_code == 400
    # Signed with another purpose's salt: refused.
    assert tracked.get(f"/l/{tokens.make(tokens.UNSUBSCRIBE, {'l': 1})}").status_code == 400
    # Validly signed, but no such link: nothing to redirect to.
    assert tracked.get(f"/l/{tokens.make(tokens.LINK, {'l': 999})}").status_code == 404
    assert (
        tracked.get(f"/l/{tokens.make(tokens.LINK, {'u': 'https://evil.example'})}").status_code
        == 400
    )
    assert count(Event, Event.kind == "clicked") == 0
