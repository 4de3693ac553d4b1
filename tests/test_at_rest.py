"""Nothing identifiable at rest: the whole life of several readers (form signups and
confirmations, an operator's add and import, sends, a bounce, an unsubscribe, a forget, a
purge) under `nurture run`, then every byte left on disk and in the services is read: the
database file, its write-ahead log, the broker's database, a pg_dump, every Redis key, and
the web and worker log. No reader's address or name appears anywhere, in plain text or in
the encodings a broker or a log would use (base64, URL-encoding)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import FIXTURES, REDIS_URL, ROOT, TEST_DATA_KEY
from tests.support import SMTPServer, free_port, new_queue, wait_until

pytestmark = pytest.mark.slow

FORM = ("zephyrine.quill@example.com", "Zephyrine")
UNSUBSCRIBES = ("marisol.vantree@example.org", "Marisol")
NEVER_CONFIRMS = ("perpetua.lindqvist@example.com", "Perpetua")
ADDED = ("thaddeus.orwin@example.net", "Thaddeus")
IMPORTED = [("ophelia.brandt@example.com", "Ophelia"), ("lucius.fenwick@example.com", "Lucius")]
BOUNCES = ("barnaby.nowhere@example.com", "Barnaby")
EVERYONE = [FORM, UNSUBSCRIBES, NEVER_CONFIRMS, ADDED, *IMPORTED, BOUNCES]


@dataclass
class Install:
    dir: Path
    env: dict[str, str]
    smtp: SMTPServer
    port: int

    def nurture(self, *args: str, **extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nurture.cli", *args],
            cwd=self.dir, env={**self.env, **extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _variants(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {
            "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'nurture.db'}",
            "NURTURE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'nurture-broker.db'}",
        }
    request.getfixturevalue("broker")  # Redis must run (or the test fails in CI)
    return {
        "NURTURE_DATABASE_URL": request.getfixturevalue("postgres_url"),
        "NURTURE_BROKER_URL": REDIS_URL,
        "NURTURE_QUEUE": new_queue(),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def install(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Install]:
    refuse = {BOUNCES[0]: 550}
    with SMTPServer(refuse=lambda address: refuse.get(address)) as smtp:
        # As real servers word it: the refusal quotes the address.
        smtp.handler.refuse_text = f"5.1.1 <{BOUNCES[0]}>: Recipient address rejected"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
        env.update(_variants(request, tmp_path))
        env.update(
            NURTURE_MAIL_URL=smtp.url,
            NURTURE_BASE_URL=f"http://127.0.0.1:{port}",
            NURTURE_SECRET_KEY="at-rest-test-secret-5f1c9a7e",
            NURTURE_DATA_KEY=TEST_DATA_KEY,
            NURTURE_DISPATCH_INTERVAL="1",
            NURTURE_RATE_LIMIT="false",
            # Event webhooks to an endpoint that refuses: their bodies wait in the outbox.
            NURTURE_EVENTS_URL=f"http://127.0.0.1:{free_port()}/hooks",
            NURTURE_EVENTS_SECRET="whsec_" + base64.b64encode(b"k" * 32).decode(),
            PYTHONPATH=str(ROOT),
        )
        (tmp_path / "templates").symlink_to(ROOT / "templates")
        yield Install(tmp_path, env, smtp, port)


@pytest.fixture
def running(install: Install) -> Iterator[Install]:
    install.nurture("db", "upgrade")
    install.nurture("sequences", "apply", str(FIXTURES / "sequences" / "quick"))
    log = open(install.dir / "run.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "run", "--port", str(install.port)],
        cwd=install.dir, env=install.env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: _get(install.url("/healthz")) == 200, 60), _tail(install)
        yield install
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except OSError:
        return 0


def _tail(install: Install) -> str:
    return (install.dir / "run.log").read_text(errors="replace")[-3000:]


def _post(url: str, fields: dict[str, str]) -> int:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return int(r.status)


def _sign_up(install: Install, email: str, name: str) -> None:
    with urllib.request.urlopen(install.url("/subscribe/quick"), timeout=10) as r:
        page = r.read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    fields = {"email": email, "first_name": name, "timezone": "Europe/Dublin", "website": ""}
    assert _post(install.url("/subscribe/quick"), {**fields, "csrf_token": token[1]}) == 200


def _mail_to(install: Install, email: str, subject_has: str = "") -> list:
    return [
        m
        for m in install.smtp.messages
        if m["To"].addresses[0].addr_spec == email and subject_has in str(m["Subject"])
    ]


def _link(msg: object, path: str) -> str:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    found = re.search(rf"(https?://\S+/{path}/[A-Za-z0-9._-]+)", text)
    assert found, f"no /{path}/ link"
    return found[1]


def _live_a_while(install: Install) -> None:
    """Everything a practice's first weeks do, through the real pages and commands."""
    for email, name in (FORM, UNSUBSCRIBES, NEVER_CONFIRMS):
        _sign_up(install, email, name)
    for email, _ in (FORM, UNSUBSCRIBES):
        assert wait_until(lambda e=email: bool(_mail_to(install, e)), 60), _tail(install)
        assert _post(_link(_mail_to(install, email)[-1], "confirm"), {}) == 200
    install.nurture(
        "subscribers", "add", ADDED[0], "--name", ADDED[1], "--sequence", "quick", "--confirmed"
    )
    csv = install.dir / "readers.csv"
    rows = [f"{e},{n},Europe/Dublin" for e, n in [*IMPORTED, BOUNCES]]
    csv.write_text("email,first_name,timezone\n" + "\n".join(rows) + "\n")
    # An import keeps to the readers' window (09:00-11:00 in Dublin): run it as at 09:05
    # there today (or yesterday), so their welcomes are due already, whatever the hour.
    dublin = datetime.now(ZoneInfo("Europe/Dublin"))
    morning = dublin.replace(hour=9, minute=5, second=0, microsecond=0)
    morning -= timedelta(days=1) if morning > dublin else timedelta(0)
    install.nurture(
        "subscribers", "import", str(csv), "--sequence", "quick", "--confirmed",
        NURTURE_CLOCK=f"{morning.isoformat()}@{time.time()}x1",
    )  # fmt: skip
    welcomed = [FORM, UNSUBSCRIBES, ADDED, *IMPORTED]
    assert wait_until(lambda: all(_mail_to(install, e, "Step one") for e, _ in welcomed), 90), (
        _tail(install)
    )
    unsubscribe = str(_mail_to(install, UNSUBSCRIBES[0], "Step one")[-1]["List-Unsubscribe"])
    one_click = re.search(r"<(https?://[^>]+/unsubscribe/[^>]+)>", unsubscribe)
    assert one_click and _post(one_click[1], {"List-Unsubscribe": "One-Click"}) == 200
    assert wait_until(
        lambda: "bounced" in install.nurture("subscribers", "show", BOUNCES[0]), 60
    ), _tail(install)
    install.nurture("subscribers", "forget", FORM[0], "--yes")
    # Forty days on: the retention limit erases who left, the pending limit who never said yes.
    later = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    clock = f"{later}@{time.time()}x1"
    purged = install.nurture(
        "subscribers", "purge", NURTURE_CLOCK=clock, NURTURE_RETENTION_DAYS="1"
    )
    assert "2 people erased" in purged and "1 unconfirmed signups erased" in purged, purged


def _spellings(value: str) -> list[bytes]:
    """The value as a file, a broker message or a log could hold it."""
    raw = value.encode()
    found = [raw, raw.lower(), urllib.parse.quote(value).encode(), value.encode("utf-16-le")]
    for pad in range(3):
        # Inside a longer base64 text the value may start at any of three alignments; the
        # groups it shares with its neighbours are left out.
        encoded = base64.b64encode(b"\0" * pad + raw)
        found.append(encoded[4 if pad else 0 : -4])
    return [f for f in found if len(f) >= 5]


def _bytes_at_rest(install: Install) -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in install.dir.iterdir() if p.is_file()}
    found.pop("readers.csv")  # the operator's own file, not ours
    url = install.env["NURTURE_DATABASE_URL"]
    if url.startswith("postgresql"):
        found["pg_dump"] = subprocess.run(
            ["pg_dump", url.replace("postgresql+psycopg://", "postgresql://")],
            capture_output=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        found["redis"] = _every_redis_value()
    return found


def _every_redis_value() -> bytes:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    out = []
    for key in client.scan_iter():
        kind = client.type(key)
        out.append(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"hash":
            out += [b for kv in client.hgetall(key).items() for b in kv]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
    return b"\n".join(out)


def test_no_reader_is_identifiable_at_rest(running: Install) -> None:
    _live_a_while(running)
    at_rest = _bytes_at_rest(running)
    assert {"nurture.db", "nurture-broker.db"} <= set(at_rest) or "pg_dump" in at_rest
    leaks = [
        (where, value)
        for where, data in at_rest.items()
        for pair in EVERYONE
        for value in pair
        for spelling in _spellings(value)
        if spelling in data
    ]
    assert leaks == []
    # The mail itself still reached each reader by name (the seal opens where it should).
    welcome = _mail_to(running, ADDED[0], "Step one")[-1]
    assert ADDED[1] in welcome.get_body(("plain",)).get_content()
