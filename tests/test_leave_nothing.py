"""Forgetting and the retention limits leave nothing behind: not in the tables, not in
SQLite's write-ahead log or free pages, not in the file outbox, not in the embedded broker;
rate-limit counters hold no raw client address; a signup nobody confirmed is erased after
NURTURE_PENDING_DAYS; and a person who left stays out under any spelling of their address."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text

from nurture.celery_app import delete_delivered_messages
from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import get_engine, transaction
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import canonical_address, find_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Consent, Enrollment, Subscriber
from nurture.web.ratelimit import RateLimit, client_group, purge_expired
from tests.cli_helpers import run
from tests.conftest import reload_runtime
from tests.web_support import csrf, drain, link_in, post_signup, subscriber


def _add(email: str, name: str | None = None, slug: str = "quick") -> None:
    with transaction() as s:
        add_subscriber(s, email, get_sequence(s, slug), first_name=name, confirmed=True)


# --- the copies outside the tables --------------------------------------------------------


def test_forget_deletes_the_file_outboxs_copies(
    db: str,
    quick_sequence: str,
    clock: FrozenClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NURTURE_MAIL_URL", f"file://{tmp_path / 'outbox'}")
    reload_runtime()
    _add("dana@example.com", "Dana")
    _add("robin@example.com", "Robin")
    drain()
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    ran = run("subscribers", "forget", "dana@example.com", "--yes")
    assert ran.code == 0 and "2 copies of their emails deleted" in ran.out  # .eml and .html
    left = b"".join(p.read_bytes() for p in (tmp_path / "outbox").iterdir())
    assert b"dana@example.com" not in left and b"Hi Dana" not in left
    assert b"robin@example.com" in left  # someone else's mail stays


def test_forget_empties_sqlites_write_ahead_log(db: str, quick_sequence: str) -> None:
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        pytest.skip("a write-ahead log file is SQLite's")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    _add("dana@example.com", "Dana")
    wal = Path(str(engine.url.database) + "-wal")
    assert wal.stat().st_size > 0
    assert run("subscribers", "forget", "dana@example.com", "--yes").code == 0
    assert wal.stat().st_size == 0


def test_delivered_messages_leave_the_embedded_broker(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    from kombu import Connection

    with Connection(url) as conn:
        queue = conn.SimpleQueue("nurture-test")
        queue.put({"sealed": "e1:abcd:xyz"})
        queue.put({"sealed": "e1:abcd:uvw"})
        queue.get(timeout=5).ack()  # delivered: kept by the transport, marked invisible
        queue.close()
    assert delete_delivered_messages(url) == 1
    engine = create_engine(url.removeprefix("sqla+"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kombu_message")).scalar() == 1
    engine.dispose()


# --- rate limits ---------------------------------------------------------------------------


def test_rate_limits_count_an_ipv6_network_and_store_no_address(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client_group("2001:db8:1:2::1") == client_group("2001:db8:1:2:ffff::13")
    assert client_group("2001:db8:1:3::1") != client_group("2001:db8:1:2::1")
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    answers = [
        client.post(
            "/subscribe/quick",
            data={"email": f"r{i}@example.com", "csrf_token": csrf(client)},
            environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{i:x}"},
        ).status_code
        for i in range(1, 14)
    ]
    assert answers.count(429) >= 3  # 10 a minute for the whole /64
    with transaction() as s:
        keys = list(s.scalars(select(RateLimit.key)))
    assert keys and not any("2001" in k or "db8" in k for k in keys)


def test_expired_rate_limit_counters_are_deleted(db: str) -> None:
    with transaction() as s:
        s.add(RateLimit(key="old", count=3, expires_at=1.0))
        s.add(RateLimit(key="live", count=1, expires_at=4_000_000_000.0))
    assert purge_expired() == 1
    with transaction() as s:
        assert list(s.scalars(select(RateLimit.key))) == ["live"]


# --- signups nobody confirmed --------------------------------------------------------------


def test_an_unconfirmed_signup_is_erased_after_the_pending_limit(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    assert post_signup(client, "typo@example.com").status_code == 200
    assert post_signup(client, "confirmed@example.com").status_code == 200
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
    with transaction() as s:
        seq = get_sequence(s, "quick")
        add_subscriber(s, "listed@example.com", seq, source="import")  # never asked
    clock.advance(timedelta(days=29))
    assert run("subscribers", "purge").code == 0
    assert subscriber("typo@example.com") is not None
    clock.advance(timedelta(days=2))
    ran = run("subscribers", "purge", "--json")
    assert ran.json()["pending_erased"] == 1
    assert subscriber("typo@example.com") is None
    assert subscriber("confirmed@example.com") is not None
    # Nobody asked for it to be forgotten: its owner may still sign up one day.
    assert post_signup(client, "typo@example.com").status_code == 200
    assert subscriber("typo@example.com") is not None


def test_a_stale_signup_of_a_confirmed_reader_for_another_sequence_goes(
    db: str, quick_sequence: str, clock: FrozenClock
) -> None:
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.spec import load_folder
    from tests.conftest import FIXTURES

    with transaction() as s:
        spec = load_folder(FIXTURES / "sequences" / "quick")
        apply_spec(s, spec.model_copy(update={"slug": "other"}))
    _add("dana@example.com")
    with transaction() as s:
        add_subscriber(
            s, "dana@example.com", get_sequence(s, "other"), source="web-form",
            await_confirmation=True,
        )  # fmt: skip
    clock.advance(timedelta(days=31))
    assert run("subscribers", "purge").code == 0
    with transaction() as s:
        sub = find_subscriber(s, "dana@example.com")
        assert sub is not None
        assert [e.sequence.slug for e in sub.enrollments] == ["quick"]
        assert s.scalar(select(Consent.id).where(Consent.confirmed_at.is_(None))) is None


# --- another spelling of someone who left ----------------------------------------------


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("a.lice+old@gmail.com", "alice@gmail.com"),
        ("A.Lice@googlemail.com", "alice@gmail.com"),
        ("bob+news@example.org", "bob@example.org"),
        ("b.ob@example.org", "b.ob@example.org"),  # dots matter outside Gmail
    ],
)
def test_the_canonical_form(address: str, canonical: str) -> None:
    assert canonical_address(address.lower()) == canonical


def test_an_import_does_not_bring_back_someone_who_left_under_another_spelling(
    db: str, quick_sequence: str, clock: FrozenClock, outbox: list, tmp_path: Path
) -> None:
    _add("alice@gmail.com", "Alice")
    assert run("subscribers", "unsubscribe", "alice@gmail.com").code == 0
    _add("carol@example.org")
    assert run("subscribers", "forget", "carol@example.org", "--yes").code == 0
    csv = tmp_path / "people.csv"
    csv.write_text("email\na.lice+old@gmail.com\ncarol+x@example.org\nnew@example.org\n")
    ran = run("subscribers", "import", str(csv), "--sequence", "quick", "--confirmed")
    assert ran.code == 0, ran.err
    assert "1 new" in ran.out and "2 skipped who left" in ran.out
    added = run("subscribers", "add", "a.lice@gmail.com", "--sequence", "quick", "--confirmed")
    assert added.code == 1 and "unsubscribed" in added.err
    with transaction() as s:
        assert find_subscriber(s, "a.lice+old@gmail.com") is None
        n = s.scalar(select(Enrollment.id).join(Subscriber).where(Subscriber.status == "confirmed"))
        assert n is not None
    drain()
    assert [m["To"].addresses[0].addr_spec for m in outbox[-1:]] == ["new@example.org"]


def test_mail_goes_to_the_exact_address_given(client: FlaskClient, outbox: list) -> None:
    assert post_signup(client, "Dana.Q+notes@gmail.com").status_code == 200
    assert outbox[-1]["To"].addresses[0].addr_spec == "dana.q+notes@gmail.com"
    assert current().data_keys is not None


def test_an_address_gets_at_most_three_confirmation_emails_a_day(
    client: FlaskClient, outbox: list, clock: FrozenClock
) -> None:
    """Whatever the source (the form from any network, an operator's add), so that nobody
    can use nurture to flood a stranger's inbox, by topic, from a /64 of addresses."""
    for i in range(5):
        r = client.post(
            "/subscribe/quick",
            data={"email": "victim@example.com", "csrf_token": csrf(client)},
            environ_base={"REMOTE_ADDR": f"2001:db8:{i}::1"},  # a new network each time
        )
        assert r.status_code == 200
        clock.advance(timedelta(minutes=11))  # past the form's own ten-minute quiet time
    assert run("subscribers", "add", "victim@example.com", "--sequence", "quick").code == 0
    assert [m["To"].addresses[0].addr_spec for m in outbox] == ["victim@example.com"] * 3
    clock.advance(timedelta(days=1))
    assert post_signup(client, "victim@example.com").status_code == 200
    assert len(outbox) == 4  # a new day
