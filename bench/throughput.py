"""End-to-end sending throughput: N subscribers due now, real Redis + PostgreSQL + Celery
workers + a C SMTP sink. Prints emails/s for the whole pipeline (dispatch pass to last
commit) and, in the same run, a plain smtplib loop to the same sink as the ceiling.

    python -m bench.throughput --subscribers 5000 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, insert, select, text

from bench.support import REDIS_URL, scratch_postgres, smtp_sink

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sequences" / "quick"


def raw_smtplib(port: int, n: int) -> float:
    msg = EmailMessage()
    msg["From"] = "hello@example.org"
    msg["To"] = "reader@example.com"
    msg["Subject"] = "raw"
    msg.set_content("x" * 2000)
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(n):
            smtp.send_message(msg)
    return n / (time.perf_counter() - start)


def with_offset(n: int, offset: int) -> None:
    seed(n, offset)


def seed(n: int, offset: int = 0) -> None:
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
    from nurture.sequences.services import apply_spec, live_steps
    from nurture.sequences.spec import load_folder

    with transaction() as s:
        result = apply_spec(s, load_folder(FIXTURE)) if not offset else None
        slug = result.slug if result else "quick"
        seq_id = s.scalar(text("SELECT id FROM sequences WHERE slug = :s"), {"s": slug})
        first = live_steps(s, seq_id)[0]
        t = now()
        s.execute(
            insert(Subscriber),
            [
                {
                    "email": f"reader{i}@example.com",
                    "first_name": f"Reader{i}",
                    "timezone": "UTC",
                    "status": SubscriberStatus.CONFIRMED,
                    "created_at": t,
                    "confirmed_at": t,
                }
                for i in range(offset, offset + n)
            ],
        )
        ids = s.scalars(select(Subscriber.id).where(Subscriber.id > offset)).all()
        s.execute(
            insert(Enrollment),
            [
                {
                    "subscriber_id": sid,
                    "sequence_id": seq_id,
                    "status": EnrollmentStatus.ACTIVE,
                    "next_step_id": first.id,
                    "next_due_at": t,
                    "created_at": t,
                    "started_at": t,
                }
                for sid in ids
            ],
        )


def sent_count() -> int:
    from nurture.db import transaction
    from nurture.models import Delivery, DeliveryStatus

    with transaction() as s:
        return s.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.SENT)) or 0


def breakdown(n: int) -> dict[str, float]:
    """Where one worker process spends its time per message (ms), measured in-process."""
    from nurture.delivery import sending
    from nurture.delivery.dispatch import dispatch_once
    from nurture.mail import backends

    spent: Counter[str] = Counter()

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    originals = {
        "_fresh_state": sending._fresh_state,
        "compose": sending.compose,
        "_record_sent": sending._record_sent,
    }
    labels = {
        "_fresh_state": "lock + re-check",
        "compose": "render + MIME",
        "_record_sent": "mark sent + advance",
    }
    smtp_send = backends.SMTPBackend.send
    try:
        for name, fn in originals.items():
            setattr(sending, name, timed(labels[name], fn))
        backends.SMTPBackend.send = timed("SMTP", smtp_send)  # type: ignore[method-assign]
        ids: list[int] = []
        dispatch_once(ids.extend, limit=n)
        start = time.perf_counter()
        sending.send_batch(ids)
        total = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(sending, name, fn)
        backends.SMTPBackend.send = smtp_send  # type: ignore[method-assign]
    per = {k: v / len(ids) * 1000 for k, v in spent.items()}
    per["commit + rest"] = total / len(ids) * 1000 - sum(per.values())
    per["total"] = total / len(ids) * 1000
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    # What `nurture worker` starts by default: two processes per core.
    parser.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    n = args.subscribers

    redis.Redis.from_url(REDIS_URL).ping()
    with smtp_sink() as port, scratch_postgres() as db_url:
        env = {
            "NURTURE_DATABASE_URL": db_url,
            "NURTURE_BROKER_URL": REDIS_URL,
            "NURTURE_MAIL_URL": f"smtp://127.0.0.1:{port}",
            "NURTURE_SECRET_KEY": "bench",
            "NURTURE_BATCH_SIZE": str(args.batch_size),
            "NURTURE_QUEUE": f"nurture-bench-{os.getpid()}",
        }
        os.environ.update(env)
        from nurture.config import reset_settings
        from nurture.migrations import upgrade

        reset_settings()
        upgrade()
        seed(n)
        raw = raw_smtplib(port, min(n, 5000))

        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
             "--loglevel", "WARNING", "--pool", "prefork",
             "--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle"],
            cwd=ROOT, env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(3)  # worker start-up is not part of the pipeline
            from nurture.delivery.dispatch import dispatch_once
            from workers.tasks import enqueue_batch

            start = time.perf_counter()
            claimed = dispatch_once(enqueue_batch, limit=n).claimed
            claim_s = time.perf_counter() - start
            deadline = start + 600
            done = 0
            while time.perf_counter() < deadline:
                done = sent_count()
                if done >= n:
                    break
                time.sleep(0.05)
            total = time.perf_counter() - start
        finally:
            worker.terminate()
            worker.wait(30)
        seed_more = 1000
        with_offset(seed_more, n)
        parts = breakdown(seed_more)
    print(f"subscribers            {n}")
    print(f"worker processes       {args.concurrency}  (batch size {args.batch_size})")
    print(f"claimed                {claimed} in {claim_s:.2f}s  ({claimed / claim_s:,.0f}/s)")
    print(f"sent                   {done} in {total:.2f}s")
    print(f"pipeline               {done / total:,.0f} emails/s  (dispatch to last commit)")
    print(f"raw smtplib loop       {raw:,.0f} emails/s  (one connection, same sink)")
    print("one process, per message (ms):")
    for name, ms in parts.items():
        print(f"  {name:<26} {ms:6.2f}")


if __name__ == "__main__":
    main()
