"""Double opt-in: GET /confirm/<token> shows a button, POST confirms and enrols."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from nurture import tokens
from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.events.models import Event
from nurture.sequences.editing import apply_spec
from nurture.sequences.spec import load_folder
from nurture.subscribers.models import Consent, Enrollment, EnrollmentStatus
from tests.web_support import count, drain, link_in, post_signup, subscriber, unsubscribe_path


def _signed_up(client: FlaskClient, outbox: list, email: str = "ann@example.com") -> str:
    assert post_signup(client, email, first_name="Ann").status_code == 200
    return link_in(outbox[-1], "confirm")


def _enrollment_status(email: str) -> str:
    sub = subscriber(email)
    assert sub is not None
    with transaction() as s:
        return s.scalars(select(Enrollment.status).where(Enrollment.subscriber_id == sub.id)).one()


def test_get_shows_a_button_and_changes_nothing(client: FlaskClient, outbox: list) -> None:
    path = _signed_up(client, outbox)
    for _ in range(3):  # a mail scanner may fetch it several times
        r = client.get(path)
        assert r.status_code == 200
        html = r.get_data(as_text=True)
        assert f'<form method="post" action="{path}">' in html
        assert "<button" in html
    assert subscriber("ann@example.com").status == "pending"  # type: ignore[union-attr]
    assert _enrollment_status("ann@example.com") == EnrollmentStatus.PENDING
    assert drain() == []


def test_post_confirms_enrols_and_the_first_step_goes_out(
    client: FlaskClient, outbox: list
) -> None:
    path = _signed_up(client, outbox)
    r = client.post(path)
    assert r.status_code == 200
    assert "You are confirmed" in r.get_data(as_text=True)
    sub = subscriber("ann@example.com")
    assert sub is not None and sub.status == "confirmed" and sub.confirmed_at is not None
    assert _enrollment_status("ann@example.com") == EnrollmentStatus.ACTIVE
    with transaction() as s:
        assert s.scalars(select(Consent.confirmed_at)).one() is not None
    assert len(drain()) == 1
    assert outbox[-1]["Subject"] == "Step one"


def test_second_confirmation_is_harmless(client: FlaskClient, outbox: list) -> None:
    path = _signed_up(client, outbox)
    assert client.post(path).status_code == 200
    drain()
    again = client.post(path)
    assert again.status_code == 200
    assert "You are confirmed" in again.get_data(as_text=True)
    # GET on a used link says so, without a button.
    html = client.get(path).get_data(as_text=True)
    assert "You are confirmed" in html and "<button" not in html
    assert count(Event, Event.kind == "confirmed") == 1
    assert drain() == []  # step one is not sent twice


def test_bad_tokens(client: FlaskClient, outbox: list, clock: FrozenClock) -> None:
    path = _signed_up(client, outbox)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    for bad in (tampered, "nonsense", tokens.make(tokens.UNSUBSCRIBE, {"s": 1})):
        for method in (client.get, client.post):
            r = method(f"/confirm/{bad}")
            assert r.status_code == 400
            assert "This link does not work" in r.get_data(as_text=True)
    # A validly signed token for a signup that does not exist.
    assert client.post(f"/confirm/{tokens.make(tokens.CONFIRM, {'c': 999})}").status_code == 400
    clock.advance(timedelta(days=8))
    for method in (client.get, client.post):
        r = method(path)
        assert r.status_code == 400
        assert "expired" in r.get_data(as_text=True)
    assert subscriber("ann@example.com").status == "pending"  # type: ignore[union-attr]


def test_an_old_link_cannot_resubscribe_someone_who_left(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    path = _signed_up(client, outbox)
    client.post(path)
    drain()
    assert client.post(unsubscribe_path(outbox[-1])).status_code == 200
    r = client.post(path)
    assert r.status_code == 200
    assert "already used" in r.get_data(as_text=True)
    assert subscriber("ann@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    # Coming back takes a new signup and a new confirmation, and starts from the top.
    new_path = _signed_up(client, outbox)
    assert new_path != path
    assert subscriber("ann@example.com").status == "pending"  # type: ignore[union-attr]
    client.post(new_path)
    assert _enrollment_status("ann@example.com") == EnrollmentStatus.ACTIVE
    clock.advance(timedelta(minutes=1))
    drain()
    # Step one is not repeated (one delivery per step and enrollment); the rest follows.
    assert [m["Subject"] for m in outbox if m["Subject"].startswith("Step")] == [
        "Step one",
        "Step two",
    ]


def test_unsubscribing_from_the_confirmation_email_sticks(
    client: FlaskClient, outbox: list
) -> None:
    path = _signed_up(client, outbox)
    assert client.post(unsubscribe_path(outbox[-1])).status_code == 200
    assert "already used" in client.post(path).get_data(as_text=True)
    assert subscriber("ann@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert drain() == []


def test_a_second_sequence_needs_its_own_confirmation(
    client: FlaskClient, outbox: list, quick_sequence: str
) -> None:
    from tests.conftest import FIXTURES

    spec = load_folder(FIXTURES / "sequences" / "quick").model_copy(update={"slug": "second"})
    with transaction() as s:
        apply_spec(s, spec)
    client.post(_signed_up(client, outbox))
    assert post_signup(client, "ann@example.com", slug="second").status_code == 200
    second_path = link_in(outbox[-1], "confirm")
    sub = subscriber("ann@example.com")
    assert sub is not None
    with transaction() as s:
        statuses = dict(
            s.execute(
                select(Enrollment.sequence_id, Enrollment.status).where(
                    Enrollment.subscriber_id == sub.id
                )
            ).all()
        )
    assert sorted(statuses.values()) == [EnrollmentStatus.ACTIVE, EnrollmentStatus.PENDING]
    assert client.post(second_path).status_code == 200
    with transaction() as s:
        rows = s.scalars(select(Enrollment.status).where(Enrollment.subscriber_id == sub.id))
        assert set(rows) == {EnrollmentStatus.ACTIVE}


def test_confirmation_email_headers_cannot_be_injected(client: FlaskClient, outbox: list) -> None:
    post_signup(client, "eve@example.com", first_name="Eve\r\nBcc: victim@example.com")
    msg = outbox[-1]
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["To"])
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script" not in html
    post_signup(client, "mal@example.com", first_name="<script>x</script>")
    html = outbox[-1].get_body(("html",)).get_content()  # type: ignore[union-attr]
    # The typed name is not in the confirmation at all (nobody is greeted by it).
    assert "script" not in html and "script" not in str(outbox[-1]["To"])
