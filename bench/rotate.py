"""`nurture keys rotate` on a large list while a worker sends: how long it takes, and that
every email sent during and after it greets the right person at the right address.

    python -m bench.rotate [--readers 100000] [--sending 2000]

PostgreSQL and Redis (as in production), a real Celery worker, an in-process SMTP server
that checks each email's greeting against its recipient. The worker starts with the new key
and the old one as previous (as the README says to restart), then `keys rotate` runs while
`--sending` readers are due.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from bench.support import REDIS_URL, free_port, runtime_from_env, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sequences" / "quick"
GREETING = re.compile(r"Hello (\w+),")


class _Checker:
    """Every email's first name must be its recipient's (reader17@ is greeted "Hello R17,")."""

    def __init__(self) -> None:
        self.received = 0
        self.wrong: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=default)
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        number = envelope.rcpt_tos[0].split("@")[0].removeprefix("reader")
        found = GREETING.search(body)
        if found is None or found.group(1) != f"R{number}":
            self.wrong.append(envelope.rcpt_tos[0])
        self.received += 1
        await asyncio.sleep(0)
        return "250 OK"


def seed(readers: int, due: int) -> None:
    """`readers` confirmed people in one sequence; the first `due` are due now."""
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import live_steps
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.addresses import person_columns

    with transaction() as s:
        apply_spec(s, load_folder(FIXTURE))
        seq_id = s.scalar(text("SELECT id FROM sequences WHERE slug = 'quick'"))
        first = live_steps(s, seq_id)[0]
    t = now()
    for start in range(0, readers, 5000):
        with transaction() as s:
            people = [
                {
                    **person_columns(f"reader{i}@example.com", f"R{i}"),
                    "timezone": "UTC",
                    "status": SubscriberStatus.CONFIRMED,
                    "created_at": t,
                    "confirmed_at": t,
                }
                for i in range(start, min(start + 5000, readers))
            ]
            ids = list(s.scalars(insert(Subscriber).returning(Subscriber.id), people))
            s.execute(
                insert(Enrollment),
                [
                    {
                        "subscriber_id": i,
                        "sequence_id": seq_id,
                        "status": EnrollmentStatus.ACTIVE,
                        "next_step_id": first.id,
                        "next_due_at": t if n < due else None,
                        "created_at": t,
                        "source": "import",
                    }
                    for n, i in enumerate(ids, start)
                ],
            )


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--sending", type=int, default=2000)
    args = parser.parse_args()
    from nurture.config import new_data_key

    old, new = new_data_key(), new_data_key()
    checker = _Checker()
    port = free_port()
    controller = Controller(checker, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with scratch_postgres() as db_url:
            env = {
                "NURTURE_DATABASE_URL": db_url,
                "NURTURE_BROKER_URL": REDIS_URL,
                "NURTURE_MAIL_URL": f"smtp://127.0.0.1:{port}",
                "NURTURE_SECRET_KEY": "bench-secret-key-0123456789",
                "NURTURE_DATA_KEY": old,
                "NURTURE_QUEUE": f"nurture-bench-rotate-{os.getpid()}",
                "NURTURE_DISPATCH_INTERVAL": "1",
            }
            os.environ.update(env)
            from nurture.migrations import upgrade

            upgrade(db_url)
            runtime_from_env()
            started = time.perf_counter()
            seed(args.readers, args.sending)
            seeded = time.perf_counter() - started
            _rotate_while_sending(env, old, new, args, checker, seeded)
    finally:
        controller.stop()


def _rotate_while_sending(
    env: dict[str, str], old: str, new: str, args: Any, checker: _Checker, seeded: float
) -> None:
    rotated = {**env, "NURTURE_DATA_KEY": new, "NURTURE_DATA_KEY_PREVIOUS": old}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--beat",
         "--schedule", f"/tmp/nurture-bench-rotate-{os.getpid()}", "--loglevel", "WARNING",
         "--concurrency", "2", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env={**os.environ, **rotated},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "nurture.cli", "keys", "rotate"],
            cwd=ROOT, env={**os.environ, **rotated}, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        sent_during = checker.received
        deadline = time.monotonic() + 300
        while checker.received < args.sending and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(30)
    print(f"readers                {args.readers:,}  (seeded in {seeded:.1f}s)")
    print(f"keys rotate            {seconds:.1f}s  ({2 * args.readers / seconds:,.0f} values/s)")
    print(f"                       {done.stdout.strip()}  (exit {done.returncode})")
    print(f"sent while rotating    {sent_during} of {args.sending}; {checker.received} in all")
    print(f"wrong greetings        {len(checker.wrong)}")
    os.environ.update(rotated)
    from nurture.db import transaction
    from nurture.models import Subscriber

    runtime_from_env()
    with transaction() as s:
        kids = {v.split(":")[1] for v in s.scalars(select(Subscriber.email_sealed))}
    print(f"key ids after          {sorted(kids)}  (one: the new key)")


if __name__ == "__main__":
    main()
