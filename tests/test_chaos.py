"""Chaos: two steps to 300 readers while workers are SIGKILLed every few seconds, Redis and
PostgreSQL restart, and the relay answers 421 (and closes) to one message in ten. Once the
faults stop, everything expected arrives within minutes: no step lost, at most two
duplicates per kill, nothing after an unsubscribe, nothing to an address that answered 550.

Redis and PostgreSQL here are private instances on free ports (a throwaway cluster under a
temporary directory): other test runs share the machine's services, and restarting those
would break them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select, text

from nurture.clock import SystemClock
from nurture.context import current
from nurture.db import transaction
from nurture.runtime import Runtime
from nurture.sequences.editing import apply_spec
from nurture.sequences.services import get_sequence
from nurture.sequences.spec import load_folder
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Subscriber, SubscriberStatus
from nurture.subscribers.unsubscribe import unsubscribe
from tests.conftest import FIXTURES, missing_service, reload_runtime
from tests.support import Worker, free_port, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.slow]

READERS = 300
BOUNCING = 5  # answer 550 at RCPT
LEAVING = 20  # unsubscribe while the run is on
FAULT_SECONDS = 33
KILL_EVERY = 6.0


class PrivateRedis:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            missing_service("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [self.binary or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "yes"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_until(self._up, timeout=10)

    def _up(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True
        )


def _pg_binary(name: str) -> str | None:
    # Debian keeps the server binaries off PATH, per major version.
    found = shutil.which(name)
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return found or (str(versions[-1]) if versions else None)


class PrivatePostgres:
    """initdb + pg_ctl as the postgres user, in a temporary directory, on a free port."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            missing_service("PostgreSQL server binaries (initdb, pg_ctl)")
        self.dir = Path(tempfile.mkdtemp(prefix="nurture-chaos-pg-"))
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/nurture"

    def _as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._as_postgres(
            self.initdb or "initdb", "-D", str(self.dir / "data"), "-U", "postgres",
            "--auth=trust", "--no-sync",
        )  # fmt: skip
        self.start()
        engine = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE nurture"))
        engine.dispose()

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            self.pg_ctl or "pg_ctl", "-D", str(self.dir / "data"), "-l",
            str(self.dir / "log"), "-o", options, "-m", "fast", "-w", action,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class ChaosRelay:
    """Refuses one attempt in ten with 421 and closes; 550 for the bouncing addresses;
    keeps (arrival time, recipient, subject) of everything accepted."""

    def __init__(self, bouncing: set[str]) -> None:
        self.bouncing = bouncing
        self.received: list[tuple[float, str, str]] = []
        self.random = random.Random(10)
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        if address in self.bouncing:
            return "550 5.1.1 no such user"
        with self.lock:
            refuse = self.random.random() < 0.1
        if refuse:
            asyncio.get_running_loop().call_later(0.01, server.transport.close)
            return "421 4.3.2 try again later, closing connection"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = str(BytesHeaderParser().parsebytes(envelope.content)["Subject"])
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((time.monotonic(), rcpt, subject))
        return "250 OK"

    def snapshot(self) -> list[tuple[float, str, str]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def private_services(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    pg, rd = PrivatePostgres(), PrivateRedis()
    try:
        pg.create()
        rd.start()
        monkeypatch.setenv("NURTURE_DATABASE_URL", pg.url)
        reload_runtime()
        from nurture.migrations import upgrade

        upgrade(pg.url)
        yield pg, rd
    finally:
        runtime.close()  # no connection left open to the database about to be dropped
        rd.stop()
        pg.destroy()


def _seed() -> list[str]:
    current().clock = SystemClock()
    with transaction() as s:
        apply_spec(s, load_folder(FIXTURES / "sequences" / "quick"))
        seq = get_sequence(s, "quick")
        # Two steps, twenty seconds apart, any time of day.
        seq.settings = {**seq.settings, "send_window": {"start": "00:00", "end": "24:00"}}
        seq.steps[1].delay_seconds = 20
        for st in seq.steps[2:]:
            st.delay_seconds = 30 * 86400
        for i in range(READERS):
            add_subscriber(s, f"c{i}@example.com", seq, timezone="UTC", confirmed=True)
    return [f"c{i}@example.com" for i in range(READERS)]


def _unsubscribe(addresses: list[str]) -> float:
    with transaction() as s:
        for a in addresses:
            unsubscribe(s, get_subscriber(s, a))
    return time.monotonic()  # after the commit


def test_chaos_everything_arrives_once_and_nothing_after_unsubscribe(
    private_services: tuple[PrivatePostgres, PrivateRedis], tmp_path: Path
) -> None:
    pg, rd = private_services
    readers = _seed()
    bouncing = set(readers[:BOUNCING])
    leaving = readers[-LEAVING:]
    relay = ChaosRelay(bouncing)
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    env = {
        "NURTURE_DATABASE_URL": pg.url,
        "NURTURE_BROKER_URL": rd.url,
        "NURTURE_MAIL_URL": f"smtp://127.0.0.1:{port}",
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_QUEUE": f"nurture-chaos-{uuid.uuid4().hex[:8]}",
        "NURTURE_LEASE_SECONDS": "60",
        "NURTURE_DISPATCH_INTERVAL": "5",
        "NURTURE_BATCH_SIZE": "25",
    }
    workers = [
        Worker(env, concurrency=2, log=tmp_path / "w0-0.log"),
        Worker(env, concurrency=2, beat=False, log=tmp_path / "w1-0.log"),
    ]
    kills = 0
    left_at = 0.0
    try:
        start = time.monotonic()
        faults = {10.0: rd, 20.0: pg}
        next_kill = start + KILL_EVERY
        while time.monotonic() - start < FAULT_SECONDS:
            time.sleep(0.2)
            elapsed = time.monotonic() - start
            if not left_at and elapsed > 8:
                left_at = _unsubscribe(leaving)
            for at, service in list(faults.items()):
                if elapsed >= at:
                    del faults[at]
                    if service is rd:
                        rd.stop()
                        time.sleep(1)
                        rd.start()
                    else:
                        pg.restart()
            if time.monotonic() >= next_kill:
                i = kills % 2
                workers[i].kill()
                kills += 1
                workers[i] = Worker(
                    env, concurrency=2, beat=i == 0, log=tmp_path / f"w{i}-{kills}.log"
                )
                next_kill += KILL_EVERY
        # Faults stop. Everyone who stayed gets both steps; leavers got what they had.
        staying = [a for a in readers if a not in bouncing and a not in leaving]
        expected = {(a, s) for a in staying for s in ("Step one", "Step two")}

        def arrived() -> bool:
            return expected <= {(a, s) for _, a, s in relay.snapshot()}

        faults_stopped = time.monotonic()
        done = wait_until(arrived, timeout=240, interval=1.0)
        recovered = time.monotonic() - faults_stopped
        time.sleep(2)
    finally:
        for w in workers:
            w.stop()
        controller.stop()
    got = relay.snapshot()
    missing = expected - {(a, s) for _, a, s in got}
    assert done, f"{len(missing)} messages missing after faults stopped\n{workers[0].tail()}"
    counts = Counter((a, s) for _, a, s in got)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"chaos: {kills} kills, {duplicates} duplicates, all in {recovered:.0f}s after faults")
    assert duplicates <= 2 * kills, (duplicates, kills)
    assert not [a for _, a, _ in got if a in bouncing]
    assert not [(t, a) for t, a, _ in got if a in leaving and t > left_at]
    with transaction() as s:
        statuses = {sub.email: sub.status for sub in s.scalars(select(Subscriber))}
    assert {statuses[a] for a in bouncing} == {SubscriberStatus.BOUNCED}
