"""`nurture inbox check` against a real IMAP server (Dovecot) holding real-world messages:
bounces from several mail systems (Postfix DSNs produced by a real Postfix, see
fixtures/inbox/make_postfix_bounces.py; Exim, qmail, Gmail, Office 365, Yahoo and Amazon SES
forms), ARF complaints, human replies from Gmail, Outlook and Apple Mail, and automatic
replies. Each kind must end where it should, and a second check must change nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery
from nurture.delivery.sending import send_batch
from nurture.events.models import Event
from nurture.mail import verp
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import email_index
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, Subscriber
from tests.cli_helpers import run
from tests.conftest import missing_service
from tests.imap_support import Dovecot, available

INBOX = Path(__file__).parent / "fixtures" / "inbox"
PLACEHOLDER_TAG = "999999-ffffffffff"
PLACEHOLDER_ID = "<quick.one.00000000000000000000000000000000@example.org>"
BOUNCES = "bounces@example.org"

# fixture -> (person status, enrollment status, events it leaves)
EXPECTED: dict[str, tuple[str, str, list[str]]] = {
    "postfix-hard": ("bounced", "bounced", ["bounced"]),
    "exim-hard": ("bounced", "bounced", ["bounced"]),
    "qmail-hard": ("bounced", "bounced", ["bounced"]),
    "gmail-hard": ("bounced", "bounced", ["bounced"]),
    "office365-hard": ("bounced", "bounced", ["bounced"]),
    "yahoo-hard": ("bounced", "bounced", ["bounced"]),
    "postfix-mailbox-full": ("confirmed", "active", ["soft_bounced"]),
    "postfix-policy": ("confirmed", "active", ["soft_bounced"]),
    "postfix-greylisted": ("confirmed", "active", ["soft_bounced"]),
    "ses-mailbox-full": ("confirmed", "active", ["soft_bounced"]),
    "postfix-delayed": ("confirmed", "active", []),
    "arf-yahoo-abuse": ("complained", "complained", ["complained"]),
    "arf-microsoft-abuse": ("complained", "complained", ["complained"]),
    "arf-dmarc-auth-failure": ("confirmed", "active", []),
    "reply-gmail": ("confirmed", "paused", ["replied", "paused"]),
    "reply-outlook": ("confirmed", "paused", ["replied", "paused"]),
    "reply-apple-mail": ("confirmed", "paused", ["replied", "paused"]),
    "auto-outlook-oof": ("confirmed", "active", []),
    "auto-gmail-vacation": ("confirmed", "active", []),
    "auto-vacation-x-autoreply": ("confirmed", "active", []),
    "auto-autorespond": ("confirmed", "active", []),
}


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not available():
        missing_service("Dovecot (dovecot-imapd, run as root)")
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> str:
    """A folder of its own per test, named in NURTURE_INBOX_URL."""
    folder = f"t{uuid.uuid4().hex[:12]}"
    c = dovecot.client()
    c.create_folder(folder)
    c.logout()
    monkeypatch.setenv("NURTURE_INBOX_URL", dovecot.url.replace("/INBOX", f"/{folder}"))
    monkeypatch.setenv("NURTURE_BOUNCE_ADDRESS", BOUNCES)
    from tests.conftest import reload_runtime

    reload_runtime()
    return folder


@pytest.fixture
def morning(clock: FrozenClock) -> FrozenClock:
    clock.set(clock.now().replace(hour=9, minute=30))  # inside the quick sequence's window
    return clock


def _send_first_steps(names: list[str]) -> dict[str, Delivery]:
    """One confirmed reader per name, each sent step one for real: their deliveries."""
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for name in names:
            add_subscriber(s, f"{name}@example.net", seq, timezone="UTC", confirmed=True)
    ids: list[int] = []
    dispatch_once(ids.extend)
    assert len(send_batch(ids).sent) == len(names)
    with transaction() as s:
        rows = s.execute(
            select(Subscriber, Delivery)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .join(Delivery, Delivery.enrollment_id == Enrollment.id)
        ).all()
        return {sub.email.split("@")[0]: d for sub, d in rows}


def _as_sent_to(fixture: str, d: Delivery) -> bytes:
    """The fixture, about this delivery: its VERP tag and Message-ID in place."""
    from nurture.context import current

    raw = (INBOX / f"{fixture}.eml").read_bytes()
    with transaction() as s:
        person = s.get_one(Delivery, d.id).enrollment.subscriber.public_id
    tag = verp.tag(current().settings.secret, d.id, person)
    raw = raw.replace(PLACEHOLDER_TAG.encode(), tag.encode())
    return raw.replace(PLACEHOLDER_ID.encode(), (d.message_id or "").encode())


def _state(email: str) -> tuple[str, str, list[str]]:
    with transaction() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email_index == email_index(email)))
        assert sub is not None
        kinds = list(
            s.scalars(
                select(Event.kind)
                .where(Event.subscriber_id == sub.id, Event.kind != "confirmed")
                .order_by(Event.id)
            )
        )
        return sub.status, sub.enrollments[0].status, kinds


def _snapshot() -> tuple[int, list[tuple[str, str]]]:
    with transaction() as s:
        events = s.scalar(select(func.count()).select_from(Event)) or 0
        people = [(sub.email, sub.status) for sub in s.scalars(select(Subscriber))]
        return events, sorted(people)


def test_each_kind_ends_where_it_should_and_a_second_check_changes_nothing(
    quick_sequence: str,
    morning: FrozenClock,
    mailbox: str,
    dovecot: Dovecot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deliveries = _send_first_steps(list(EXPECTED))
    others = [
        (INBOX / "other-newsletter.eml").read_bytes(),
        (INBOX / "other-person.eml").read_bytes(),
        b"this is not a message at all\r\n",  # no header: unreadable, counted, skipped
    ]
    dovecot.append(
        *(_as_sent_to(name, deliveries[name]) for name in EXPECTED), *others, folder=mailbox
    )
    caplog.set_level(logging.INFO)

    first = run("inbox", "check", "--json")
    assert first.code == 0, first.err
    assert first.json() == {
        "hard_bounce": 6,
        "soft_bounce": 4,
        "delayed": 1,
        "complaint": 2,
        "reply": 3,
        "auto_reply": 4,
        "other": 3,  # the newsletter, the colleague and the DMARC failure report
        "broken": 1,
        "unmatched": 0,
    }
    for name, expected in EXPECTED.items():
        assert _state(f"{name}@example.net") == expected, name
    # Counts only: no address, subject or body reached the logs.
    assert "@example.net" not in caplog.text and "Can we talk" not in caplog.text

    before = _snapshot()
    second = run("inbox", "check")
    assert second.code == 0, second.err
    assert second.out.strip() == "no new messages"
    assert _snapshot() == before
    # Handled mail is flagged with our keyword, never marked read: people share this inbox.
    flags = dovecot.flags(mailbox)
    assert len(flags) == len(EXPECTED) + len(others)
    assert all(b"\\Seen" not in f for f in flags.values())
    assert sum(b"$NurtureBroken" in f for f in flags.values()) == 1


def test_summary_line_names_counts_never_addresses(
    quick_sequence: str, morning: FrozenClock, mailbox: str, dovecot: Dovecot
) -> None:
    deliveries = _send_first_steps(["postfix-hard", "reply-gmail"])
    dovecot.append(
        _as_sent_to("postfix-hard", deliveries["postfix-hard"]),
        _as_sent_to("reply-gmail", deliveries["reply-gmail"]),
        folder=mailbox,
    )
    ran = run("inbox", "check")
    assert ran.code == 0, ran.err
    assert ran.out.strip() == "2 new messages: 1 hard bounce, 1 reply"
    assert "@" not in ran.out


def test_a_forged_tag_or_unknown_message_id_ends_nobody(
    quick_sequence: str, morning: FrozenClock, mailbox: str, dovecot: Dovecot
) -> None:
    deliveries = _send_first_steps(["victim"])
    d = deliveries["victim"]
    raw = (INBOX / "postfix-hard.eml").read_bytes()
    # A tag with the right delivery id but a made-up signature, and no Message-ID of ours.
    forged = raw.replace(PLACEHOLDER_TAG.encode(), f"{d.id}-0123456789".encode())
    dovecot.append(forged, folder=mailbox)
    ran = run("inbox", "check", "--json")
    assert ran.json()["hard_bounce"] == 1 and ran.json()["unmatched"] == 1
    assert _state("victim@example.net") == ("confirmed", "active", [])


def test_soft_bounces_end_a_subscription_only_when_they_repeat_over_days(
    quick_sequence: str, morning: FrozenClock, mailbox: str, dovecot: Dovecot
) -> None:
    d = _send_first_steps(["full"])["full"]
    raw = _as_sent_to("postfix-mailbox-full", d)
    for day in range(3):
        # Each day the same mailbox is full again (a new notice, so a new Message-ID).
        notice = raw.replace(b"Message-Id: <", f"Message-Id: <day{day}.".encode())
        dovecot.append(notice, folder=mailbox)
        assert run("inbox", "check").code == 0
        status = _state("full@example.net")[0]
        assert status == ("bounced" if day == 2 else "confirmed"), day
        morning.advance(timedelta(days=1, hours=12))


def test_a_reply_does_what_on_reply_says(
    quick_sequence: str, morning: FrozenClock, mailbox: str, dovecot: Dovecot
) -> None:
    deliveries = _send_first_steps(["reply-gmail"])
    dovecot.append(_as_sent_to("reply-gmail", deliveries["reply-gmail"]), folder=mailbox)
    assert run("inbox", "check").code == 0
    assert _state("reply-gmail@example.net")[1] == "paused"
    # Paused: nothing more is claimed for them, however much time passes.
    morning.advance(timedelta(days=1))
    claimed: list[int] = []
    dispatch_once(claimed.extend)
    assert claimed == []
    # The practice answered in person and lets the series go on.
    assert run("subscribers", "resume", "reply-gmail@example.net").out.strip() == (
        "resumed 1 sequence(s)"
    )
    dispatch_once(claimed.extend)
    assert len(claimed) == 1


@pytest.fixture(scope="module")
def dovecot_tls() -> Iterator[Dovecot]:
    if not available():
        missing_service("Dovecot (dovecot-imapd, run as root)")
    server = Dovecot(tls=True).start()
    yield server
    server.stop()


def test_imaps_reads_over_verified_tls_and_refuses_an_untrusted_certificate(
    quick_sequence: str,
    morning: FrozenClock,
    dovecot_tls: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import reload_runtime

    deliveries = _send_first_steps(["reply-apple-mail"])
    folder = f"t{uuid.uuid4().hex[:12]}"
    c = dovecot_tls.client()
    c.create_folder(folder)
    c.logout()
    raw = _as_sent_to("reply-apple-mail", deliveries["reply-apple-mail"])
    dovecot_tls.append(raw, folder=folder)
    monkeypatch.setenv("NURTURE_INBOX_URL", dovecot_tls.tls_url.replace("/INBOX", f"/{folder}"))
    reload_runtime()
    current().clock = morning
    # The server's certificate is self-signed: not trusted, nothing is read.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    refused = run("inbox", "check")
    assert refused.code == 1 and refused.err.strip() == (
        "Error: cannot open the inbox: SSLCertVerificationError"
    )
    assert _state("reply-apple-mail@example.net")[1] == "active"
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot_tls.cert_file))
    ran = run("inbox", "check")
    assert ran.code == 0 and ran.out.strip() == "1 new message: 1 reply", ran.err
    assert _state("reply-apple-mail@example.net")[1] == "paused"
