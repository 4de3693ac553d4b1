"""What the benchmarks share: a fast SMTP sink, a scratch PostgreSQL database, timing."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "NURTURE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NURTURE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink: a C SMTP server that accepts and discards, far faster than us."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(binary):
        raise SystemExit(
            "smtp-sink not found: apt-get install postfix (see scripts/system-deps.sh)"
        )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


class _Refusing421:
    """aiosmtpd handler: one message in ten, picked at random (any attempt, so the same
    message is now and then refused twice), gets "421" after DATA and the connection
    closes, as a busy relay does; nothing in the reply speaks of rates. Everything else is
    accepted."""

    def __init__(self) -> None:
        self.random = random.Random(421)
        self.received = 0
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.random.random() < 0.1:
            self.refused += 1
            asyncio.get_running_loop().call_later(0.01, server.transport.close)
            return "421 4.3.2 service not available, closing transmission channel"
        self.received += len(envelope.rcpt_tos)
        return "250 OK"


@contextmanager
def refusing_server() -> Iterator[int]:
    """A Python SMTP server answering 421 (then closing) to 10% of messages."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(_Refusing421(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def scratch_postgres() -> Iterator[str]:
    name = f"nurture_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def runtime_from_env() -> Any:
    """A nurture runtime of the environment as it is now, current from here on: a benchmark
    is its own process's main, the way the `nurture` command is."""
    from nurture.config import load_settings
    from nurture.context import bind
    from nurture.runtime import create_runtime

    runtime = create_runtime(load_settings())
    bind(runtime)
    return runtime
