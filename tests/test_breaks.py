""" "Take a break for two weeks": the footer link, its page (POST only), the pause with an end
date, the upkeep pass that ends it into the reader's window, and what records it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture import tokens
from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.events.models import Event, EventKind, OutboxEvent
from nurture.events.outbox import open_body
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.upkeep import tidy
from tests.cli_helpers import dump, run
from tests.conftest import reload_runtime
from tests.test_event_webhooks import SECRET
from tests.web_support import confirm_signup, count, drain, link_in, subscriber

NY = ZoneInfo("America/New_York")


def _text(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def _html(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def _enrollment(email: str) -> Enrollment:
    with transaction() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.id == subscriber(email).id))  # type: ignore[union-attr]
        assert sub is not None
        e = sub.enrollments[0]
        s.expunge(e)
        return e


def _on_break(client: FlaskClient, outbox: list, email: str = "ann@example.com") -> str:
    """A confirmed reader who got step one; returns the break link of that email."""
    confirm_signup(client, outbox, email)
    drain()
    return link_in(outbox[-1], "break")


def test_every_email_offers_a_break_beside_unsubscribe(client: FlaskClient, outbox: list) -> None:
    path = _on_break(client, outbox)
    step = outbox[-1]
    text, html = _text(step), _html(step)
    assert "Take a break for two weeks: https://nurture.test/break/" in text
    assert text.index("Unsubscribe:") < text.index("Take a break")
    assert f'href="https://nurture.test{path}"' in html and "take a break for two weeks" in html
    # The token names the person, like the unsubscribe token: never the email or a number.
    claims = tokens.read(tokens.BREAK, path.rsplit("/", 1)[1])
    assert claims.person == subscriber("ann@example.com").public_id  # type: ignore[union-attr]


def test_get_and_head_show_the_button_and_change_nothing(
    client: FlaskClient, outbox: list, db: str
) -> None:
    path = _on_break(client, outbox)
    before = dump(db)
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'<form method="post" action="{path}">' in html and "<button" in html
    assert "Take a break for two weeks?" in html and "Friday 20 March" in html
    assert client.head(path).status_code == 200
    assert dump(db) == before


def test_post_pauses_until_two_weeks_from_now_and_records_it(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    path = _on_break(client, outbox)
    taken = client.post(path)
    assert taken.status_code == 200 and "Set-Cookie" not in taken.headers
    assert "Your break has started" in taken.get_data(as_text=True)
    e = _enrollment("ann@example.com")
    assert e.status == EnrollmentStatus.PAUSED
    assert e.paused_until == clock.now() + timedelta(days=14)
    with transaction() as s:
        (event,) = s.scalars(select(Event).where(Event.kind == EventKind.TOOK_BREAK))
        assert event.data == {"until": "2026-03-20T14:00:00+00:00"}
    # A second press (or the page again) changes nothing and says when it ends.
    assert "Friday 20 March" in client.post(path).get_data(as_text=True)
    assert "You are on a break" in client.get(path).get_data(as_text=True)
    assert count(Event, Event.kind == EventKind.TOOK_BREAK) == 1
    # Nothing goes out during the break.
    sent = len(outbox)
    for _ in range(3):
        clock.advance(timedelta(days=1))
        drain()
    assert len(outbox) == sent


def test_bad_and_tampered_tokens_get_a_clear_page(
    client: FlaskClient, outbox: list, db: str
) -> None:
    path = _on_break(client, outbox)
    good = path.rsplit("/", 1)[1]
    public_id = subscriber("ann@example.com").public_id  # type: ignore[union-attr]
    before = dump(db)
    for bad in (good[:-3] + "zzz", "x", tokens.unsubscribe_token(public_id)):
        for method in (client.get, client.post):
            r = method(f"/break/{bad}")
            assert r.status_code == 400
            assert "This link does not work" in r.get_data(as_text=True)
    assert dump(db) == before


def test_the_break_ends_into_the_readers_next_window(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    path = _on_break(client, outbox)
    client.post(path)
    # 14 days later, at 11:30 in New York: the window (09:00-11:00) has closed for the day.
    clock.set(datetime(2026, 3, 20, 15, 30, tzinfo=UTC))
    assert tidy()["breaks_ended"] == 1
    e = _enrollment("ann@example.com")
    assert e.status == EnrollmentStatus.ACTIVE and e.paused_until is None
    assert e.next_due_at is not None
    assert e.next_due_at.astimezone(NY) == datetime(2026, 3, 21, 9, 0, tzinfo=NY)
    assert drain() == []  # not at once
    assert tidy()["breaks_ended"] == 0
    clock.set(datetime(2026, 3, 21, 13, 0, tzinfo=UTC))
    assert len(drain()) == 1
    assert outbox[-1]["Subject"] == "Step two"
    kinds = [
        ev["kind"]
        for ev in run("subscribers", "show", "ann@example.com", "--json").json()["events"]
    ]
    assert kinds[-3:] == ["paused", "took_break", "resumed"]


def test_an_operators_pause_during_a_break_outlasts_it(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    client.post(_on_break(client, outbox))
    assert run("subscribers", "pause", "ann@example.com").code == 0
    assert _enrollment("ann@example.com").paused_until is None
    clock.advance(timedelta(days=15))
    assert tidy()["breaks_ended"] == 0
    assert _enrollment("ann@example.com").status == EnrollmentStatus.PAUSED
    assert run("subscribers", "resume", "ann@example.com").code == 0
    assert _enrollment("ann@example.com").status == EnrollmentStatus.ACTIVE


def test_timeline_stats_and_schedule_show_the_break(
    client: FlaskClient, outbox: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    reload_runtime()
    client.post(_on_break(client, outbox))
    shown = run("subscribers", "show", "ann@example.com", terminal=True).out
    assert "took_break" in shown and "until 2026-03-20 10:00" in shown  # 14:00 UTC, EDT
    assert "on a break they took until 2026-03-20 10:00 America/New_York" in shown
    assert "paused" in shown and "until" in shown  # the enrollment's own "paused until" column
    story = run("subscribers", "show", "ann@example.com", "--json").json()
    assert story["enrollments"][0]["paused_until"] == "2026-03-20T14:00:00+00:00"
    (seq,) = run("stats", "quick", "--json").json()
    assert {st["key"]: st["took_break"] for st in seq["steps"]}["one"] == 1
    assert "1 took a break" in run("stats", "quick", terminal=True).out
    (held,) = run("schedule", "--json").json()
    assert (held["slot"], held["held"]["paused"]) == ("paused", 1)


def test_discreet_mode_words_it_neutrally(
    db: str, clock: FrozenClock, eager_celery: None, tmp_path: Path, outbox: list
) -> None:
    from tests.test_discreet_and_footer import TOPIC, _discreet_sequence

    _discreet_sequence(tmp_path, enabled=True)
    from nurture.web.app import create_app

    app: Flask = create_app(current(), TESTING=True)
    client = app.test_client()
    confirm_signup_in(client, outbox, "partner-help")
    drain()
    step = outbox[-1]
    assert "Pause these emails for two weeks: https://" in _text(step)
    assert "pause these emails for two weeks" in _html(step)
    assert "take a break" not in (_text(step) + _html(step)).lower()
    path = link_in(step, "break")
    for page in (client.get(path), client.post(path)):
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and TOPIC not in html
        assert "take a break" not in html.lower() and "your break" not in html.lower()
        assert "Weekly Notes" in html or "Paused until" in html


def confirm_signup_in(client: FlaskClient, outbox: list, slug: str) -> None:
    from tests.web_support import post_signup

    assert post_signup(client, "ann@example.com", slug=slug).status_code == 200
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200


def test_the_break_is_sent_as_an_event(
    client: FlaskClient, outbox: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_EVENTS_URL", "https://crm.example.org/hooks")
    monkeypatch.setenv("NURTURE_EVENTS_SECRET", SECRET)
    reload_runtime()
    client.post(_on_break(client, outbox))
    with transaction() as s:
        rows = list(s.scalars(select(OutboxEvent).where(OutboxEvent.type == "subscriber.paused")))
        assert len(rows) == 1
        body = open_body(rows[0])
    assert body is not None and '"email":"ann@example.com"' in body
    assert '"sequence":"quick"' in body
