"""What the benchmarks share: a fast SMTP sink, a scratch PostgreSQL database, timing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
