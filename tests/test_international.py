"""International addresses are delivered (SMTPUTF8, IDNA); one that cannot be fails alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.delivery.sending import send_batch
from nurture.mail.backends import backend_from_url
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, Subscriber
from tests.support import SMTPServer, Worker, wait_until

JOSE = "josé@example.com"
IDN = "user@exämple.com"
IDN_ASCII = "user@xn--exmple-cua.com"
PLAIN = ["ann@example.com", "bob@example.com"]
EVERYONE = [PLAIN[0], JOSE, IDN, PLAIN[1]]


def _enrol_all(names: bool = True) -> None:
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for email in EVERYONE:
            name = "Zoë" if names else None
            add_subscriber(s, email, seq, first_name=name, confirmed=True)


def _statuses() -> dict[str, tuple[str, str, str | None]]:
    with transaction() as s:
        rows = s.execute(
            select(Subscriber, Subscriber.status, Delivery.status, Delivery.error)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .join(Delivery, Delivery.enrollment_id == Enrollment.id)
        )
        return {r[0].email: (r[1], r[2], r[3]) for r in rows}


def test_everyone_is_delivered_where_the_server_offers_smtputf8(
    quick_sequence: str, clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enrol_all()
    with SMTPServer(smtputf8=True) as smtp:
        monkeypatch.setenv("NURTURE_MAIL_URL", smtp.url)
        sent: list[int] = []
        dispatch_once(lambda ids: sent.extend(send_batch(ids, backend_from_url(smtp.url)).sent))
        assert len(sent) == 4
        assert sorted(smtp.recipients) == sorted([*PLAIN, JOSE, IDN_ASCII])
        to = sorted(str(m["To"]) for m in smtp.messages)
    assert f"Zoë <{JOSE}>" in to and f"Zoë <{IDN_ASCII}>" in to


def test_without_smtputf8_only_that_one_fails_and_the_rest_is_delivered(
    quick_sequence: str, clock: object
) -> None:
    _enrol_all()
    with SMTPServer(smtputf8=False) as smtp:
        results = []
        dispatch_once(lambda ids: results.append(send_batch(ids, backend_from_url(smtp.url))))
        assert sorted(smtp.recipients) == sorted([*PLAIN, IDN_ASCII])
    assert len(results[0].sent) == 3 and len(results[0].failed) == 1
    status = _statuses()
    sub_status, delivery_status, error = status[JOSE]
    assert delivery_status == DeliveryStatus.FAILED and "SMTPUTF8" in (error or "")
    assert sub_status == "confirmed"  # their address is fine; our relay is not
    assert JOSE not in (error or "")


def test_an_unexpected_error_in_one_message_does_not_stop_the_batch(
    quick_sequence: str, clock: object, monkeypatch: pytest.MonkeyPatch, outbox: list
) -> None:
    _enrol_all(names=False)
    from nurture.delivery import sending

    real = sending.compose

    def fragile(*args: object, **kwargs: object) -> object:
        if kwargs.get("email") == JOSE:
            raise UnicodeEncodeError("ascii", JOSE, 3, 4, "ordinal not in range(128)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sending, "compose", fragile)
    results = []
    dispatch_once(lambda ids: results.append(send_batch(ids)))
    assert len(results[0].sent) == 3 and results[0].retry == [results[0].retry[0]]
    _, delivery_status, error = _statuses()[JOSE]
    assert delivery_status == DeliveryStatus.QUEUED  # an attempt counted, tried again later
    assert error == "unexpected UnicodeEncodeError while building or sending"


@pytest.mark.celery
@pytest.mark.slow
def test_a_real_worker_delivers_the_others_and_logs_no_address(
    quick_sequence: str, broker: str, tmp_path: Path, db: str
) -> None:
    _enrol_all()
    queue = f"nurture-test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    with SMTPServer(smtputf8=False) as smtp:
        env = {
            "NURTURE_DATABASE_URL": db,
            "NURTURE_BROKER_URL": broker,
            "NURTURE_MAIL_URL": smtp.url,
            "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
            "NURTURE_BASE_URL": "https://nurture.test",
            "NURTURE_QUEUE": queue,
            "NURTURE_DISPATCH_INTERVAL": "0.5",
        }
        worker = Worker(env, concurrency=2, beat=True, log=log)
        try:
            done = wait_until(lambda: len(smtp.recipients) >= 3, timeout=60)
            assert done, worker.tail()
            assert wait_until(lambda: _statuses()[JOSE][1] == DeliveryStatus.FAILED, timeout=30), (
                worker.tail()
            )
            # The batch's closing line: the whole batch is in the log before the worker stops.
            assert wait_until(lambda: "batch done" in log.read_text(errors="replace"), 30)
        finally:
            worker.stop()
        assert sorted(smtp.recipients) == sorted([*PLAIN, IDN_ASCII])
    text = log.read_text(encoding="utf-8", errors="replace").lower()
    assert "batch done" in text
    for address in [*EVERYONE, IDN_ASCII]:
        local = address.split("@")[0]
        assert address.lower() not in text
        assert f"{local}@" not in text
    assert "jos" + "\u00e9" not in text and "exämple" not in text and "zoë" not in text
