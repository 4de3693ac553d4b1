"""Event webhooks: written to the outbox in the same transaction as the change, delivered by
a real Celery worker on Redis to a real HTTP receiver that refuses each event's first
attempt and checks every signature with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from nurture.booking.booked import mark_booked
from nurture.clock import FrozenClock
from nurture.config import load_settings
from nurture.db import transaction
from nurture.errors import ConfigError
from nurture.events import webhooks as event_webhooks
from nurture.events.models import OutboxEvent
from nurture.events.outbox import open_body
from nurture.events.recording import record_event
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.breaks import take_break
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.leaving import mark_bounced
from nurture.subscribers.privacy import forget
from nurture.subscribers.unsubscribe import unsubscribe
from tests.cli_helpers import run
from tests.conftest import reload_runtime
from tests.support import Worker, free_port, wait_until

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
KINDS = [
    "confirmed", "unsubscribed", "booked", "bounced", "complained", "replied", "forgotten",
    "paused",  # a reader took a break (EventKind.TOOK_BREAK)
]  # fmt: skip


class Receiver:
    """The practice's endpoint: refuses the first attempt of each webhook-id (503), verifies
    every request with the reference library, keeps what it accepted."""

    def __init__(self, refuse_first: bool = True, status: int = 204) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.attempts: dict[str, int] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    payload = Webhook(SECRET).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                msg_id = self.headers["webhook-id"]
                with receiver.lock:
                    n = receiver.attempts[msg_id] = receiver.attempts.get(msg_id, 0) + 1
                    ok = n > 1 or not refuse_first
                    if ok and status < 300:
                        receiver.accepted.append({"id": msg_id, **payload})
                self.send_response(status if ok else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/nurture"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def events_on(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with Receiver() as receiver:
        monkeypatch.setenv("NURTURE_EVENTS_URL", receiver.url)
        monkeypatch.setenv("NURTURE_EVENTS_SECRET", SECRET)
        reload_runtime()
        yield receiver


def _every_kind(slug: str) -> None:
    """Each announced change, through the services that make it."""
    with transaction() as s:
        seq = get_sequence(s, slug)
        for who in ("ann", "bob", "cy", "dee", "eve", "fay"):
            add_subscriber(s, f"{who}@example.com", seq, confirmed=who == "ann")
    with transaction() as s:
        unsubscribe(s, get_subscriber(s, "bob@example.com"))
        mark_booked(s, get_subscriber(s, "cy@example.com"))
        mark_bounced(s, get_subscriber(s, "dee@example.com"), "550 no such user")
        # The kinds issue 11 records, through the same one function.
        record_event(s, "complained", get_subscriber(s, "eve@example.com"))
        record_event(s, "replied", get_subscriber(s, "fay@example.com"))
        take_break(s, get_subscriber(s, "ann@example.com"))
        forget(s, "ann@example.com")


def _bodies() -> list[dict[str, Any]]:
    with transaction() as s:
        rows = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        return [json.loads(b) for row in rows if (b := open_body(row))]


def test_events_go_to_the_outbox_in_the_same_transaction(
    events_on: Receiver, quick_sequence: str, clock: FrozenClock
) -> None:
    _every_kind(quick_sequence)
    bodies = _bodies()
    assert sorted(b["type"] for b in bodies) == sorted(f"subscriber.{k}" for k in KINDS)
    by_type = {b["type"]: b for b in bodies}
    assert by_type["subscriber.forgotten"]["data"] == {
        "email": "ann@example.com",
        "sequence": "quick",
    }
    assert by_type["subscriber.unsubscribed"]["data"]["email"] == "bob@example.com"
    assert by_type["subscriber.confirmed"]["timestamp"] == "2026-03-06T14:00:00+00:00"
    # A change that rolls back announces nothing.
    with pytest.raises(RuntimeError), transaction() as s:
        unsubscribe(s, get_subscriber(s, "eve@example.com"))
        raise RuntimeError("rolled back")
    assert len(_bodies()) == len(KINDS)
    # Kinds that are not part of the contract stay private.
    with transaction() as s:
        record_event(s, "clicked", get_subscriber(s, "eve@example.com"))
    assert len(_bodies()) == len(KINDS)


def test_nothing_is_written_when_webhooks_are_off(quick_sequence: str, clock: FrozenClock) -> None:
    _every_kind(quick_sequence)
    assert _bodies() == []
    assert run("events", "list", "--json").json() == []


def test_import_announces_confirmations_too(
    events_on: Receiver, quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("email\nann@example.com\nbob@example.com\n")
    assert run("subscribers", "import", str(csv), "--sequence", "quick", "--confirmed").code == 0
    assert sorted(b["data"]["email"] for b in _bodies()) == ["ann@example.com", "bob@example.com"]


@pytest.mark.celery
@pytest.mark.slow
def test_a_real_worker_delivers_every_event_signed_after_a_refusal(
    events_on: Receiver, quick_sequence: str, broker: str, tmp_path: Path, db: str
) -> None:
    _every_kind(quick_sequence)
    env = {
        "NURTURE_DATABASE_URL": db,
        "NURTURE_BROKER_URL": broker,
        "NURTURE_MAIL_URL": "memory://",
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_QUEUE": f"nurture-test-{uuid.uuid4().hex[:12]}",
        "NURTURE_DISPATCH_INTERVAL": "0.5",
        "NURTURE_EVENTS_URL": events_on.url,
        "NURTURE_EVENTS_SECRET": SECRET,
    }
    worker = Worker(env, concurrency=2, log=tmp_path / "worker.log")
    try:
        # The first retry comes 5 seconds after the refused attempt.
        done = wait_until(lambda: len(events_on.accepted) >= len(KINDS), timeout=60)
    finally:
        worker.stop()
    assert done, f"{len(events_on.accepted)} accepted\n{worker.tail()}"
    assert events_on.bad_signatures == 0
    assert sorted(a["type"] for a in events_on.accepted) == sorted(f"subscriber.{k}" for k in KINDS)
    assert set(events_on.attempts.values()) == {2}  # refused once, then delivered, once
    rows = run("events", "list", "--json").json()
    assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 2)}
    assert _bodies() == []  # delivered bodies (they name people) are erased
    assert "example.com" not in worker.log.read_text()  # no address in the logs


def test_refused_for_more_than_a_day_then_failed(
    events_on: Receiver,
    quick_sequence: str,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, quick_sequence), confirmed=True)
    start = clock.now()
    tried: list[int] = []

    def enqueue(ids: list[int]) -> None:
        tried.extend(ids)
        event_webhooks.deliver(ids)

    with Receiver(refuse_first=False, status=500) as always_500:
        monkeypatch.setenv("NURTURE_EVENTS_URL", always_500.url)
        reload_runtime()
        for _ in range(300):  # 50 simulated hours, a sweep every 10 minutes
            event_webhooks.sweep(enqueue)
            clock.advance(timedelta(minutes=10))
    rows = run("events", "list", "--json").json()
    assert [(r["status"], r["attempts"], r["error"]) for r in rows] == [("failed", 8, "HTTP 500")]
    assert len(tried) == 8 and _bodies() == []
    assert sum(event_webhooks.RETRY_AFTER, timedelta()) > timedelta(days=1)
    with transaction() as s:
        row = s.scalars(select(OutboxEvent)).one()
        # The last attempt came more than a day after the first.
        assert row.created_at == start and row.next_attempt_at is None
    assert run("events", "list", "--status", "pending", "--json").json() == []


def test_redirects_and_silence_are_not_deliveries() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    with Receiver(refuse_first=False, status=302) as redirecting:
        assert event_webhooks.post(redirecting.url, key, "msg_1", "{}") == "HTTP 302"
    port = free_port()  # nobody listens there
    error = event_webhooks.post(f"http://127.0.0.1:{port}/", key, "msg_1", "{}")
    assert error is not None and error.startswith("no answer")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NURTURE_EVENTS_URL": "https://crm.example.org/h"}, "NURTURE_EVENTS_SECRET is required"),
        ({"NURTURE_EVENTS_SECRET": "abc"}, "NURTURE_EVENTS_SECRET: must be whsec_"),
        ({"NURTURE_EVENTS_SECRET": "whsec_" + "a" * 8}, "NURTURE_EVENTS_SECRET: must be whsec_"),
        ({"NURTURE_EVENTS_URL": "ftp://x", "NURTURE_EVENTS_SECRET": SECRET}, "NURTURE_EVENTS_URL"),
    ],
)
def test_bad_event_settings_stop_start_up(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert message in str(err.value)
    assert "whsec_YWFh" not in str(err.value) and "abc" not in str(err.value)


def test_beat_sweeps_events_only_when_set_and_purges_daily(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nurture.runtime import create_runtime

    # Unconfirmed signups are erased after NURTURE_PENDING_DAYS whatever else is set, and
    # what has served (delivered broker messages, old rate-limit counters) every minute.
    schedule = create_runtime(load_settings()).celery.conf.beat_schedule
    assert set(schedule) == {"dispatch", "purge", "tidy"}
    monkeypatch.setenv("NURTURE_EVENTS_URL", "https://crm.example.org/hooks")
    monkeypatch.setenv("NURTURE_EVENTS_SECRET", SECRET)
    monkeypatch.setenv("NURTURE_RETENTION_DAYS", "365")
    schedule = create_runtime(load_settings()).celery.conf.beat_schedule
    assert schedule["events"]["task"] == "nurture.events_sweep"
    assert schedule["purge"]["task"] == "nurture.purge"
