"""No identity can be confused: ids are never given out twice, and every link, Message-ID
and VERP tag names the person it was made for, so a forgotten reader's old email can never
act on whoever comes next (SQLite used to give the next row the forgotten person's id)."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from nurture import tokens
from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery, Link
from nurture.events.models import Event
from nurture.feedback.classify import Kind, Notice
from nurture.feedback.handling import apply
from nurture.mail import verp
from nurture.subscribers.models import Consent, Enrollment, Subscriber
from nurture.subscribers.privacy import forget
from tests.cli_helpers import run
from tests.web_support import count, drain, link_in, post_signup, subscriber, unsubscribe_path


def _forget(email: str) -> None:
    assert run("subscribers", "forget", email, "--yes").code == 0


def test_a_forgotten_readers_confirmation_link_does_not_confirm_the_next_one(
    client: FlaskClient, outbox: list
) -> None:
    assert post_signup(client, "alex@example.com").status_code == 200
    old_link = link_in(outbox[-1], "confirm")
    old_message_id = outbox[-1]["Message-ID"]
    _forget("alex@example.com")
    assert post_signup(client, "blair@example.com").status_code == 200
    assert outbox[-1]["Message-ID"] != old_message_id
    r = client.post(old_link)
    assert r.status_code == 400
    assert subscriber("blair@example.com").status == "pending"  # type: ignore[union-attr]
    assert drain() == []  # no welcome for someone who never clicked
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200  # their own works


def test_a_forgotten_readers_unsubscribe_link_does_not_unsubscribe_the_next_one(
    client: FlaskClient, outbox: list
) -> None:
    for email in ("alex@example.com", "blair@example.com"):
        if email == "blair@example.com":
            _forget("alex@example.com")
        assert post_signup(client, email).status_code == 200
        assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
        drain()
        if email == "alex@example.com":
            old_unsubscribe = unsubscribe_path(outbox[-1])
    r = client.post(old_unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200  # one-click must answer 200 whatever it finds
    assert subscriber("blair@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_ids_are_never_given_out_twice(db: str, quick_sequence: str) -> None:
    from nurture.sequences.services import get_sequence
    from nurture.subscribers.enrolling import add_subscriber

    def add(email: str) -> tuple[int, ...]:
        with transaction() as s:
            sub = add_subscriber(s, email, get_sequence(s, "quick"), confirmed=True)
            s.flush()
            consent = s.scalars(select(Consent.id).where(Consent.subscriber_id == sub.id)).one()
            enrollment = s.scalars(
                select(Enrollment.id).where(Enrollment.subscriber_id == sub.id)
            ).one()
            return sub.id, consent, enrollment

    first = add("alex@example.com")
    with transaction() as s:
        forget(s, "alex@example.com")
    second = add("blair@example.com")
    assert all(b > a for a, b in zip(first, second, strict=True))


def test_every_people_table_keeps_its_ids_on_sqlite(db: str) -> None:
    with transaction() as s:
        if s.get_bind().dialect.name != "sqlite":
            return  # PostgreSQL's sequences never give an id twice
        for table in ("subscribers", "consents", "enrollments", "deliveries", "links", "events"):
            ddl = s.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
                {"t": table},
            ).scalar_one()
            assert "AUTOINCREMENT" in ddl, table


def test_a_late_bounce_for_a_forgotten_reader_lands_on_nobody(
    client: FlaskClient, outbox: list
) -> None:
    assert post_signup(client, "alex@example.com").status_code == 200
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
    drain()
    with transaction() as s:
        d = s.scalars(select(Delivery)).one()
        tag = verp.tag(current().settings.secret, d.id, d.enrollment.subscriber.public_id)
        old_message_id = d.message_id
    _forget("alex@example.com")
    assert post_signup(client, "blair@example.com").status_code == 200
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
    drain()
    notice = Notice(Kind.HARD_BOUNCE, "5.1.1", (old_message_id or "",), (tag,))
    with transaction() as s:
        assert apply(s, notice, "imap") is False
    assert subscriber("blair@example.com").status == "confirmed"  # type: ignore[union-attr]


def test_links_made_before_tokens_named_people_still_work_for_their_own_row(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    """Emails already in inboxes carry tokens with a bare number: they keep working for the
    row that number named when they were signed, and for nobody made after."""
    assert post_signup(client, "alex@example.com").status_code == 200
    with transaction() as s:
        alex = s.scalars(select(Subscriber)).one()
        old_style = tokens.make(tokens.UNSUBSCRIBE, {"s": alex.id})
        ahead = tokens.make(tokens.UNSUBSCRIBE, {"s": alex.id + 1})
    clock.advance(timedelta(minutes=5))
    assert post_signup(client, "blair@example.com").status_code == 200  # gets id alex.id + 1
    assert client.post(f"/unsubscribe/{ahead}").status_code == 200
    assert subscriber("blair@example.com").status == "pending"  # type: ignore[union-attr]
    assert client.post(f"/unsubscribe/{old_style}").status_code == 200
    assert subscriber("alex@example.com").status == "unsubscribed"  # type: ignore[union-attr]


def test_a_tracked_link_names_its_reader(
    client: FlaskClient, outbox: list, monkeypatch: object
) -> None:
    from tests.conftest import reload_runtime

    monkeypatch.setenv("NURTURE_TRACK_CLICKS", "true")  # type: ignore[attr-defined]
    reload_runtime()
    assert post_signup(client, "alex@example.com").status_code == 200
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
    drain()
    msg: EmailMessage = outbox[-1]
    path = link_in(msg, "l")
    with transaction() as s:
        link_id = s.scalars(select(func.min(Link.id))).one()
    forged = tokens.link_token(link_id, "f" * 32)  # our signature, someone else's person
    assert client.get(f"/l/{forged}").status_code == 404
    assert client.get(path).status_code == 302
    assert count(Event, Event.kind == "clicked") == 1
