"""Real components for tests: an in-process SMTP server (aiosmtpd) and Celery worker
processes against a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Collector:
    def __init__(self, delay: float, refuse: Callable[[str], int | None] | None) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TO) per message
        self.delay = delay
        self.refuse = refuse
        self.refuse_text = ""
        self.lock = threading.Lock()
        self.envelopes_started = 0  # messages whose DATA arrived (before any delay)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, _: Any
    ) -> str:
        code = self.refuse(address) if self.refuse else None
        if code:
            text = self.refuse_text or ("try again later" if code < 500 else "no such user")
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes_started += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = message_from_bytes(envelope.content, policy=default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SMTPServer:
    """A real SMTP server on 127.0.0.1 keeping what it receives."""

    def __init__(
        self,
        delay: float = 0.0,
        refuse: Callable[[str], int | None] | None = None,
        *,
        smtputf8: bool = False,
        **tls: Any,
    ) -> None:
        self.port = free_port()
        self.handler = _Collector(delay, refuse)
        # smtputf8: offer SMTPUTF8 (RFC 6531), as most large mail systems do. tls: aiosmtpd's
        # tls_context= (offer STARTTLS) or ssl_context= (TLS from the start, smtps).
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8, **tls
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def recipients(self) -> list[str]:
        with self.handler.lock:
            return [rcpt for _, rcpts in self.handler.envelopes for rcpt in rcpts]

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class Worker:
    """`celery worker` (optionally with embedded beat) as a separate process group."""

    def __init__(
        self, env: dict[str, str], *, concurrency: int = 2, beat: bool = True, log: Path
    ) -> None:
        cmd = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker",
            "--loglevel", "INFO", "--pool", "prefork", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            cmd += ["--beat", "--schedule", str(log.with_suffix(".beat"))]
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and pool children, no cleanup."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# Queues made for one test: Celery's Redis transport leaves keys behind (the queue's
# `_kombu.binding.*` routing set and more); the autouse fixture in conftest.py deletes
# them after the test. Named precisely, so other test runs sharing the Redis keep theirs.
_QUEUES: list[str] = []


def new_queue() -> str:
    """A Celery queue name for one test (NURTURE_QUEUE), cleaned up after it."""
    name = f"nurture-test-{uuid.uuid4().hex[:12]}"
    _QUEUES.append(name)
    return name


def queues_made() -> list[str]:
    return list(_QUEUES)


def drop_queues(redis_url: str) -> None:
    """Delete every key the test's queues left in Redis (the queue names are unique)."""
    import redis

    names, _QUEUES[:] = list(_QUEUES), []
    client = redis.Redis.from_url(redis_url)
    try:
        for name in names:
            keys = list(client.scan_iter(match=f"*{name}*"))
            if keys:
                client.delete(*keys)
            deadlines = "_kombu.binding_deadlines"
            ours = [m for m in client.zrange(deadlines, 0, -1) if name.encode() in m]
            if ours:
                client.zrem(deadlines, *ours)
    finally:
        client.close()
