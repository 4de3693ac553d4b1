"""What comes back, without an IMAP server: the VERP return path on the wire, the settings,
`subscribers pause` / `resume`, on_reply, stats per step and the story `subscribers show`
tells. (The inbox itself: test_inbox.py; provider webhooks: test_web_mail_webhooks.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.config import load_settings
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.sending import send_batch
from nurture.errors import ConfigError
from nurture.feedback.classify import Kind, Notice
from nurture.feedback.handling import apply
from nurture.mail import verp
from nurture.mail.backends import backend_from_url
from nurture.sequences.models import Sequence
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import email_index
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, EnrollmentStatus
from tests.cli_helpers import run
from tests.conftest import reload_runtime
from tests.support import SMTPServer

BOUNCES = "bounces@example.org"


@pytest.fixture
def morning(clock: FrozenClock) -> FrozenClock:
    clock.set(datetime(2026, 3, 6, 9, 30, tzinfo=UTC))
    return clock


def _enrol(*emails: str) -> None:
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for email in emails:
            add_subscriber(s, email, seq, timezone="UTC", confirmed=True)


def _send_due(backend_url: str | None = None) -> list[int]:
    ids: list[int] = []
    dispatch_once(ids.extend)
    backend = backend_from_url(backend_url) if backend_url else None
    return send_batch(ids, backend).sent


def _delivery(email: str) -> Delivery:
    with transaction() as s:
        d = s.scalar(
            select(Delivery)
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Delivery.status == DeliveryStatus.SENT)
            .where(Enrollment.subscriber.has(email_index=email_index(email)))
            .order_by(Delivery.id.desc())
        )
        assert d is not None
        return d


def _enrollment_status(email: str) -> str:
    with transaction() as s:
        e = s.scalar(
            select(Enrollment).where(Enrollment.subscriber.has(email_index=email_index(email)))
        )
        assert e is not None
        return e.status


# --- VERP --------------------------------------------------------------------------------


def test_each_message_carries_its_own_signed_return_path(
    quick_sequence: str, morning: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("NURTURE_BOUNCE_ADDRESS", BOUNCES)
    reload_runtime()
    current().clock = morning
    _enrol("ann@example.com", "bob@example.com")
    with SMTPServer() as smtp:
        assert len(_send_due(smtp.url)) == 2
        envelopes = smtp.handler.envelopes
        messages = smtp.messages
    secret = load_settings().secret
    for (mail_from, rcpts), msg in zip(envelopes, messages, strict=True):
        local, _, domain = mail_from.partition("@")
        assert domain == "example.org" and local.startswith("bounces+")
        tag = local.removeprefix("bounces+")
        assert tag.replace("-", "").isalnum() and tag == tag.lower() and len(local) < 40
        d = _delivery(rcpts[0])
        assert verp.delivery_named(tag) == d.id
        with transaction() as s:
            person = s.get_one(Delivery, d.id).enrollment.subscriber.public_id
        assert verp.is_ours(tag, secret, d.id, person)
        assert msg["From"].addresses[0].addr_spec == "hello@example.org"  # header untouched
    # Tags are keyed: another id with this signature, another key, or another person,
    # names nothing.
    tag = verp.tag(secret, 7, "a" * 32)
    assert verp.is_ours(tag, secret, 7, "a" * 32)
    assert not verp.is_ours(tag.replace("7-", "8-"), secret, 8, "a" * 32)
    assert not verp.is_ours(tag, "another-secret", 7, "a" * 32)
    assert not verp.is_ours(tag, secret, 7, "b" * 32)


def test_without_a_bounce_address_the_return_path_is_the_from_address(
    quick_sequence: str, morning: FrozenClock
) -> None:
    _enrol("ann@example.com")
    with SMTPServer() as smtp:
        assert len(_send_due(smtp.url)) == 1
        assert smtp.handler.envelopes == [("hello@example.org", ["ann@example.com"])]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NURTURE_BOUNCE_ADDRESS", "bounces+x@example.org"),
        ("NURTURE_BOUNCE_ADDRESS", "not-an-address"),
        ("NURTURE_INBOX_URL", "pop3://u:p@mail.example.org"),
        ("NURTURE_INBOX_URL", "imaps://mail.example.org/INBOX"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it_and_never_its_value(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(f"{name}: ") and value not in str(err.value)


def test_inbox_check_without_an_inbox_is_a_one_line_error(db: str) -> None:
    ran = run("inbox", "check")
    assert ran.code == 1 and ran.err.strip().startswith("Error: NURTURE_INBOX_URL is not set")


def test_beat_checks_the_inbox_every_minute_only_when_there_is_one(settings_env: dict) -> None:
    from nurture.runtime import create_runtime

    assert "inbox-check" not in create_runtime(load_settings()).celery.conf.beat_schedule
    with_inbox = load_settings(inbox_url="imaps://u:p@imap.example.org/INBOX")
    entry = create_runtime(with_inbox).celery.conf.beat_schedule["inbox-check"]
    assert entry["task"] == "nurture.inbox_check" and entry["schedule"] == 60.0


# --- pause and resume --------------------------------------------------------------------


def test_pause_takes_back_a_claimed_send_and_resume_goes_on_in_the_window(
    quick_sequence: str, morning: FrozenClock
) -> None:
    _enrol("ann@example.com")
    assert len(_send_due()) == 1  # step one
    morning.advance(timedelta(minutes=2))
    claimed: list[int] = []
    dispatch_once(claimed.extend)  # step two handed to a worker...
    assert run("subscribers", "pause", "ann@example.com").out.strip() == "paused 1 sequence(s)"
    assert send_batch(claimed).sent == []  # ...which finds nothing to send
    assert run("subscribers", "pause", "ann@example.com").out.strip() == (
        "nothing to pause: no running sequence"
    )
    morning.set(datetime(2026, 3, 6, 20, 0, tzinfo=UTC))  # evening: outside 09:00-11:00
    dispatch_once(claimed.extend)
    assert len(claimed) == 1
    ran = run("subscribers", "resume", "ann@example.com", "--sequence", "quick")
    assert ran.out.strip() == "resumed 1 sequence(s)"
    with transaction() as s:
        e = s.scalar(select(Enrollment))
        assert e is not None and e.status == EnrollmentStatus.ACTIVE
        assert e.next_step is not None and e.next_step.key == "two"  # nothing skipped
        assert e.next_due_at == datetime(2026, 3, 7, 9, 0, tzinfo=UTC)  # next morning
    morning.set(datetime(2026, 3, 7, 9, 1, tzinfo=UTC))
    assert len(_send_due()) == 1


def test_pause_errors_are_one_line(quick_sequence: str, morning: FrozenClock) -> None:
    _enrol("ann@example.com")
    assert run("subscribers", "pause", "nobody@example.com").code == 1
    ran = run("subscribers", "pause", "ann@example.com", "--sequence", "nope")
    assert ran.code == 1 and "nope" in ran.err and "Traceback" not in ran.err


# --- on_reply, stats and the story ---------------------------------------------------------


def _set_on_reply(value: str) -> None:
    with transaction() as s:
        seq = s.scalar(select(Sequence).where(Sequence.slug == "quick"))
        assert seq is not None
        seq.settings = {**seq.settings, "on_reply": value}


@pytest.mark.parametrize(
    ("on_reply", "after"), [("pause", "paused"), ("stop", "cancelled"), ("continue", "active")]
)
def test_a_reply_does_what_the_sequence_says(
    quick_sequence: str, morning: FrozenClock, on_reply: str, after: str
) -> None:
    _set_on_reply(on_reply)
    _enrol("ann@example.com")
    _send_due()
    d = _delivery("ann@example.com")
    with transaction() as s:
        assert apply(s, Notice(Kind.REPLY, message_ids=(d.message_id or "",)), "imap")
    assert _enrollment_status("ann@example.com") == after


def test_on_reply_is_checked_in_sequence_yaml(tmp_path: object) -> None:
    from pathlib import Path

    from nurture.sequences.spec import SpecError, load_folder
    from tests.cli_helpers import sequence_copy

    folder = sequence_copy(Path(str(tmp_path)))
    yaml = folder / "sequence.yaml"
    yaml.write_text(yaml.read_text() + "on_reply: stop\n")
    assert load_folder(folder).on_reply == "stop"
    yaml.write_text(yaml.read_text().replace("on_reply: stop", "on_reply: shout"))
    with pytest.raises(SpecError, match="on_reply"):
        load_folder(folder)


def test_stats_count_bounces_complaints_and_replies_per_step(
    quick_sequence: str, morning: FrozenClock
) -> None:
    people = ["hard@example.com", "soft@example.com", "spam@example.com", "talk@example.com"]
    _enrol(*people)
    _send_due()
    kinds = [Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE, Kind.COMPLAINT, Kind.REPLY]
    sent = {email: _delivery(email).message_id or "" for email in people}
    with transaction() as s:
        for email, kind in zip(people, kinds, strict=True):
            assert apply(s, Notice(kind, "5.1.1", (sent[email],)), "imap")
    funnel = {st["key"]: st for st in run("stats", "quick", "--json").json()[0]["steps"]}
    one = funnel["one"]
    assert (one["sent"], one["bounced"], one["soft_bounced"], one["complained"]) == (4, 1, 1, 1)
    assert one["replied"] == 1 and funnel["two"]["replied"] == 0
    assert run("stats", "quick").code == 0  # the table (its layout is the CLI's business)

    story = run("subscribers", "show", "talk@example.com", "--json").json()
    assert [e["kind"] for e in story["events"]][-2:] == ["replied", "paused"]
    assert story["events"][-2]["detail"] == "paused via imap"
    assert story["events"][-1]["detail"] == "by reply"
    assert story["enrollments"][0]["status"] == "paused"
    hard = run("subscribers", "show", "hard@example.com", "--json").json()
    assert hard["status"] == "bounced" and hard["events"][-1]["detail"].startswith("hard 5.1.1")
    shown = run("subscribers", "show", "spam@example.com").out
    assert "complained" in shown
