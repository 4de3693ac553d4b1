"""GET /unsubscribe/<token> shows a button; POST (also RFC 8058 one-click) unsubscribes."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from nurture import tokens
from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.sending import send_batch
from nurture.events.models import Event
from tests.web_support import confirm_signup, count, drain, subscriber, unsubscribe_path


def test_get_shows_a_button_and_changes_nothing(client: FlaskClient, outbox: list) -> None:
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    path = unsubscribe_path(outbox[-1])
    r = client.get(path)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert f'<form method="post" action="{path}">' in html and "<button" in html
    assert subscriber("ann@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_one_click_post_stops_everything_at_once(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    confirm_signup(client, outbox, "ann@example.com")
    drain()
    step_one = outbox[-1]
    assert step_one["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Step two is claimed and queued (a worker is about to send it) when the click arrives.
    clock.advance(timedelta(minutes=2))
    queued: list[int] = []
    dispatch_once(queued.extend)
    assert len(queued) == 1

    client.delete_cookie("anything")
    r = client.post(
        unsubscribe_path(step_one),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200 and r.location is None
    assert "Set-Cookie" not in r.headers
    assert "You are unsubscribed" in r.get_data(as_text=True)
    assert subscriber("ann@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    with transaction() as s:
        assert s.get(Delivery, queued[0]).status == DeliveryStatus.CANCELLED  # type: ignore[union-attr]
        how = s.scalars(select(Event.data).where(Event.kind == "unsubscribed")).one()
        assert how == {"how": "one-click"}
    sent_before = len(outbox)
    assert send_batch(queued).sent == []
    for _ in range(5):
        clock.advance(timedelta(minutes=5))
        drain()
    assert len(outbox) == sent_before


def test_the_page_button_and_a_second_post_are_harmless(client: FlaskClient, outbox: list) -> None:
    confirm_signup(client, outbox, "ann@example.com")
    path = unsubscribe_path(outbox[-1])
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200
    assert count(Event, Event.kind == "unsubscribed") == 1


def test_bad_tokens(client: FlaskClient, outbox: list) -> None:
    confirm_signup(client, outbox, "ann@example.com")
    good = unsubscribe_path(outbox[-1]).rsplit("/", 1)[1]
    for bad in (good[:-2] + "zz", "x", tokens.make(tokens.CONFIRM, {"c": 1})):
        assert client.get(f"/unsubscribe/{bad}").status_code == 400
        assert client.post(f"/unsubscribe/{bad}").status_code == 400
    assert subscriber("ann@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_unsubscribe_for_someone_forgotten_still_answers_200(client: FlaskClient) -> None:
    path = f"/unsubscribe/{tokens.make(tokens.UNSUBSCRIBE, {'s': 4242})}"
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 200
