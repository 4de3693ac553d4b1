"""Sending against relays that behave like real ones: 421 "try again later, closing
connection" to some messages, a rate limit shared by several worker processes. Real Celery
workers on the real Redis, a real SMTP server (aiosmtpd, with and without PIPELINING)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from nurture.clock import SystemClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.editing import apply_spec
from nurture.sequences.services import get_sequence
from nurture.sequences.spec import load_folder
from nurture.subscribers.enrolling import add_subscriber
from tests.conftest import FIXTURES, reload_runtime
from tests.support import Worker, free_port, wait_until

pytestmark = [pytest.mark.celery]


class RelayHandler:
    """Accepts mail, except: the first attempt for every address in `refuse_once` gets a
    421 and the connection is closed, as busy relays do. After DATA, a share of messages
    picked at random (`refuse_share`), or every message beyond `cap` a second, gets a 421
    and the connection closes. Advertises PIPELINING on demand. Keeps (arrival time,
    recipient) of every accepted message."""

    def __init__(
        self,
        *,
        refuse_once: set[str] | None = None,
        pipelining: bool = False,
        refuse_share: float = 0.0,
        cap: float | None = None,
    ) -> None:
        self.refuse_once = set(refuse_once or ())
        self.pipelining = pipelining
        self.refuse_share = refuse_share
        self.cap = cap
        self.last_accepted = 0.0
        self.random = random.Random(20)
        self.refused: Counter[str] = Counter()
        self.received: list[tuple[float, str]] = []
        self.hard_bounce: set[str] = set()
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        with self.lock:
            if address in self.hard_bounce:
                return "550 5.1.1 no such user"
            if address in self.refuse_once and not self.refused[address]:
                self.refused[address] += 1
                # The reply goes out first, then the connection closes.
                asyncio.get_running_loop().call_later(0.01, server.transport.close)
                return "421 4.3.2 try again later, closing connection"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            t = time.monotonic()
            too_soon = self.cap is not None and t - self.last_accepted < 1 / self.cap
            if too_soon or self.random.random() < self.refuse_share:
                self.refused.update(envelope.rcpt_tos)
                # Nothing in the words about rates: only the timing can tell.
                asyncio.get_running_loop().call_later(0.01, server.transport.close)
                return "421 4.3.2 service not available, closing transmission channel"
            self.last_accepted = t
            for rcpt in envelope.rcpt_tos:
                self.received.append((t, rcpt))
        return "250 OK"

    def addresses(self) -> list[str]:
        with self.lock:
            return [a for _, a in self.received]


class Relay:
    def __init__(self, handler: RelayHandler) -> None:
        self.handler = handler
        self.port = free_port()
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Relay:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _seed(n: int, prefix: str = "r") -> list[str]:
    """n confirmed readers whose first step is due now; later steps a month away."""
    current().clock = SystemClock()
    with transaction() as s:
        apply_spec(s, load_folder(FIXTURES / "sequences" / "quick"))
        seq = get_sequence(s, "quick")
        for st in seq.steps[1:]:
            st.delay_seconds = 30 * 86400
        for i in range(n):
            add_subscriber(s, f"{prefix}{i}@example.com", seq, timezone="UTC", confirmed=True)
    return [f"{prefix}{i}@example.com" for i in range(n)]


def _env(db: str, broker: str, mail_url: str, **extra: str) -> dict[str, str]:
    return {
        "NURTURE_DATABASE_URL": db,
        "NURTURE_BROKER_URL": broker,
        "NURTURE_MAIL_URL": mail_url,
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_QUEUE": f"nurture-test-{uuid.uuid4().hex[:12]}",
        **extra,
    }


@pytest.fixture
def postgres_only(
    settings_env: dict[str, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Worker processes on PostgreSQL, as in production (SQLite: tests/test_dispatch.py)."""
    monkeypatch.setenv("NURTURE_DATABASE_URL", postgres_url)
    reload_runtime()
    yield postgres_url
    reload_runtime()


@pytest.mark.parametrize("pipelining", [False, True], ids=["smtplib", "pipelined"])
def test_421_and_dropped_connection_costs_one_message_a_short_retry(
    postgres_only: str, broker: str, tmp_path: Path, pipelining: bool
) -> None:
    readers = _seed(200)
    refused = set(readers[::10])  # 10% of messages: 421, then the connection closes
    handler = RelayHandler(refuse_once=refused, pipelining=pipelining)
    with Relay(handler) as relay:
        env = _env(
            postgres_only,
            broker,
            relay.url,
            NURTURE_DISPATCH_INTERVAL="0.5",
            NURTURE_BATCH_SIZE="50",
        )
        worker = Worker(env, concurrency=2, log=tmp_path / "worker.log")
        start = time.monotonic()
        try:
            # The shortest backoff is a minute: finishing well inside it means nobody
            # behind a refused message waited for one.
            done = wait_until(lambda: len(handler.addresses()) >= 200, timeout=45)
            elapsed = time.monotonic() - start
            time.sleep(1.0)  # anything extra would arrive now
        finally:
            worker.stop()
        assert done, f"{len(handler.addresses())} of 200 arrived\n{worker.tail()}"
    got = Counter(handler.addresses())
    assert set(got) == set(readers)
    assert max(got.values()) == 1  # every message exactly once
    assert set(handler.refused) == refused  # the refusals did happen
    assert elapsed < 40
    with transaction() as s:
        statuses = s.scalars(select(Delivery.status)).all()
    assert statuses.count(DeliveryStatus.SENT) == 200


def test_send_rate_holds_across_two_worker_processes(
    postgres_only: str, broker: str, tmp_path: Path
) -> None:
    readers = _seed(60)
    handler = RelayHandler()
    rate = 10.0
    with Relay(handler) as relay:
        env = _env(
            postgres_only,
            broker,
            relay.url,
            NURTURE_SEND_RATE=str(rate),
            NURTURE_DISPATCH_INTERVAL="0.5",
            NURTURE_BATCH_SIZE="5",
        )
        first = Worker(env, concurrency=2, log=tmp_path / "first.log")
        second = Worker(env, concurrency=2, beat=False, log=tmp_path / "second.log")
        try:
            done = wait_until(lambda: len(handler.addresses()) >= 60, timeout=60)
            time.sleep(0.5)
        finally:
            first.stop()
            second.stop()
        assert done, f"{len(handler.addresses())} of 60 arrived\n{first.tail()}\n{second.tail()}"
    assert sorted(handler.addresses()) == sorted(readers)
    assert "succeeded" in first.log.read_text() and "succeeded" in second.log.read_text()
    times = sorted(t for t, _ in handler.received)
    # Four pool processes in two workers could send ~4x faster; together they keep the rate
    # (one token of burst, a little scheduling jitter).
    span = times[-1] - times[0]
    assert (len(times) - 1) / span <= rate * 1.1, span
    for i in range(len(times) - 20):
        assert times[i + 20] - times[i] >= 20 / rate - 0.3  # no window runs ahead either


def test_random_421s_after_data_cost_a_retry_not_the_pace(
    postgres_only: str, broker: str, tmp_path: Path
) -> None:
    # One message in ten refused at random, and the connection closed, with nothing in the
    # reply about rates: each refusal costs a reconnect and that message's retry, and every
    # worker keeps its full pace (halving it on every burst of refusals drained this in
    # minutes).
    readers = _seed(600)
    handler = RelayHandler(refuse_share=0.1, pipelining=True)
    with Relay(handler) as relay:
        env = _env(postgres_only, broker, relay.url, NURTURE_DISPATCH_INTERVAL="0.5")
        worker = Worker(env, concurrency=2, log=tmp_path / "worker.log")
        try:
            wait_until(lambda: bool(handler.addresses()), timeout=30)
            start = time.monotonic()
            done = wait_until(lambda: len(handler.addresses()) >= 600, timeout=60)
            elapsed = time.monotonic() - start
            time.sleep(1.0)
        finally:
            worker.stop()
        assert done, f"{len(handler.addresses())} of 600 arrived\n{worker.tail()}"
    got = Counter(handler.addresses())
    assert set(got) == set(readers) and max(got.values()) == 1
    assert sum(handler.refused.values()) >= 30  # the refusals did happen
    assert elapsed < 30, elapsed


def test_refusals_that_rise_with_the_pace_slow_every_worker(
    postgres_only: str, broker: str, tmp_path: Path
) -> None:
    # A relay that refuses whatever comes faster than 10 a second, its words saying nothing
    # of rates: at full pace nearly every message is refused, so the pace must come down
    # for all workers together (each one alone would keep hitting the cap), and then most
    # messages get through at the first try.
    readers = _seed(60)
    handler = RelayHandler(cap=10.0, pipelining=True)
    with Relay(handler) as relay:
        env = _env(
            postgres_only, broker, relay.url,
            NURTURE_DISPATCH_INTERVAL="0.5", NURTURE_BATCH_SIZE="30",
        )  # fmt: skip
        worker = Worker(env, concurrency=2, log=tmp_path / "worker.log")
        try:
            done = wait_until(lambda: len(handler.addresses()) >= 60, timeout=50)
            time.sleep(0.5)
        finally:
            worker.stop()
        assert done, f"{len(handler.addresses())} of 60 arrived\n{worker.tail()}"
    assert sorted(handler.addresses()) == sorted(readers)
    # Without a shared slow-down every message would be refused again and again.
    assert sum(handler.refused.values()) < 60, handler.refused
