"""End-to-end sending throughput: N subscribers due now, real Redis + PostgreSQL + Celery
workers (`nurture worker` defaults) + a C SMTP sink. Prints, from the same run: two plain
smtplib loops to the same sink as ceilings (our own message as prebuilt bytes; an
EmailMessage built per message), the pipeline's emails/s (dispatch pass to last commit),
their ratio, and where one process spends a message's time. Then the drain benchmark: the
same pipeline against a server answering 421 (and closing) to 10% of messages.

    python -m bench.throughput --subscribers 5000
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
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, insert, select, text

from bench.support import REDIS_URL, refusing_server, runtime_from_env, scratch_postgres, smtp_sink

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sequences" / "quick"


def our_message() -> EmailMessage:
    """One message exactly as the pipeline builds it (reader0, first step)."""
    from nurture.db import transaction
    from nurture.delivery.compose import compose
    from nurture.models import Enrollment, Subscriber
    from nurture.sequences.services import live_steps

    with transaction() as s:
        e = s.scalars(select(Enrollment).join(Subscriber).limit(1)).one()
        step = live_steps(s, e.sequence_id)[0]
        return compose(
            e.sequence,
            step,
            public_id=e.subscriber.public_id,
            email=e.subscriber.email,
            first_name=e.subscriber.first_name,
        )


def raw_prebuilt(port: int, n: int, msg: EmailMessage) -> float:
    """The ceiling: one connection, the same bytes every time, nothing else."""
    from nurture.mail.message import envelope_of, wire_bytes

    data = wire_bytes(msg)
    sender, rcpts = envelope_of(msg)
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(n):
            smtp.sendmail(sender, rcpts, data)
    return n / (time.perf_counter() - start)


def raw_email(port: int, n: int, msg: EmailMessage) -> float:
    """What a simple sender does: an EmailMessage (text + HTML) built for each message."""
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            m = EmailMessage()
            m["From"] = str(msg["From"])
            m["To"] = f"reader{i}@example.com"
            m["Subject"] = str(msg["Subject"])
            m.set_content(text)
            m.add_alternative(html, subtype="html")
            smtp.send_message(m)
    return n / (time.perf_counter() - start)


def with_offset(n: int, offset: int) -> None:
    seed(n, offset)


def seed(n: int, offset: int = 0) -> None:
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import live_steps
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.addresses import person_columns

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
                    **person_columns(f"reader{i}@example.com", f"Reader{i}"),
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
    from nurture.delivery.store_postgres import PostgresStore
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

    # (owner, attribute, label): the store's lock is where PostgreSQL's round trip is (the
    # previous message's commit travels with it); record_sent only queues its writes.
    hooks = [
        (PostgresStore, "lock", "lock + re-check"),
        (sending, "compose", "render + MIME"),
        (backends.SMTPBackend, "send", "SMTP"),
        (PostgresStore, "record_sent", "mark sent + advance"),
    ]
    originals = [getattr(owner, name) for owner, name, _ in hooks]
    try:
        for (owner, name, label), fn in zip(hooks, originals, strict=True):
            setattr(owner, name, timed(label, fn))
        ids: list[int] = []
        dispatch_once(ids.extend, limit=n)
        start = time.perf_counter()
        sending.send_batch(ids)
        total = time.perf_counter() - start
    finally:
        for (owner, name, _), fn in zip(hooks, originals, strict=True):
            setattr(owner, name, fn)
    per = {k: v / len(ids) * 1000 for k, v in spent.items()}
    per["commit + rest"] = total / len(ids) * 1000 - sum(per.values())
    per["total"] = total / len(ids) * 1000
    return per


def start_worker(env: dict[str, str], concurrency: int, beat: Path | None = None) -> Any:
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
           "--loglevel", "WARNING", "--pool", "prefork", "--concurrency", str(concurrency),
           "--without-gossip", "--without-mingle"]  # fmt: skip
    if beat is not None:
        cmd += ["--beat", "--schedule", str(beat)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_sent(n: int, start: float, timeout: float) -> tuple[int, float]:
    done = 0
    while time.perf_counter() < start + timeout:
        done = sent_count()
        if done >= n:
            break
        time.sleep(0.05)
    return done, time.perf_counter() - start


def base_env(db_url: str, mail_port: int, batch_size: int) -> dict[str, str]:
    return {
        "NURTURE_DATABASE_URL": db_url,
        "NURTURE_BROKER_URL": REDIS_URL,
        "NURTURE_MAIL_URL": f"smtp://127.0.0.1:{mail_port}",
        "NURTURE_SECRET_KEY": "bench-secret-key-0123456789",
        "NURTURE_BATCH_SIZE": str(batch_size),
        "NURTURE_QUEUE": f"nurture-bench-{os.getpid()}-{time.monotonic_ns()}",
    }


def use(env: dict[str, str]) -> None:
    from nurture.migrations import upgrade

    os.environ.update(env)
    upgrade(runtime_from_env().settings.database_url)


def drain_421(n: int, concurrency: int, batch_size: int) -> tuple[int, float]:
    """n readers due now, a server that answers 421 and closes to one message in ten,
    beat dispatching every 5 seconds: seconds until every message is sent."""
    import tempfile

    with refusing_server() as port, scratch_postgres() as db_url:
        env = {**base_env(db_url, port, batch_size), "NURTURE_DISPATCH_INTERVAL": "5"}
        use(env)
        seed(n)
        with tempfile.TemporaryDirectory() as tmp:
            worker = start_worker(env, concurrency, beat=Path(tmp) / "beat")
            try:
                return wait_sent(n, time.perf_counter(), 600)
            finally:
                worker.terminate()
                worker.wait(30)


@dataclass
class Round:
    raw_before: float
    raw_after: float
    claimed: int
    claim_seconds: float
    sent: int
    seconds: float

    @property
    def pipeline(self) -> float:
        return self.sent / self.seconds

    @property
    def ratio(self) -> float:
        # To the mean of the raw loop before and after: a shared machine's speed drifts
        # within a run, and so a drift does not move the ratio either way.
        return self.pipeline / ((self.raw_before + self.raw_after) / 2)


def one_round(port: int, msg: EmailMessage, n: int, offset: int) -> Round:
    """n more readers due now: the raw loop, the pipeline over them (the worker is up and
    idle), the raw loop again."""
    from nurture.celery_app import enqueue_batch
    from nurture.delivery.dispatch import dispatch_once

    if offset:
        with_offset(n, offset)
    raw_before = raw_prebuilt(port, min(n, 5000), msg)
    start = time.perf_counter()
    claimed = dispatch_once(enqueue_batch).claimed  # as beat's dispatch task does
    claim_seconds = time.perf_counter() - start
    done, seconds = wait_sent(offset + n, start, 600)
    raw_after = raw_prebuilt(port, min(n, 5000), msg)
    return Round(raw_before, raw_after, claimed, claim_seconds, done - offset, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    # What `nurture worker` starts by default: two processes per core, at most 8.
    parser.add_argument("--concurrency", type=int, default=min(2 * (os.cpu_count() or 1), 8))
    parser.add_argument("--batch-size", type=int, default=100)  # NURTURE_BATCH_SIZE default
    parser.add_argument(
        "--rounds", type=int, default=1, help="pipeline runs, each over new readers (median)"
    )
    parser.add_argument("--drain", type=int, default=600, help="readers in the 421 benchmark")
    args = parser.parse_args()
    n = args.subscribers

    redis.Redis.from_url(REDIS_URL).ping()
    with smtp_sink() as port, scratch_postgres() as db_url:
        env = base_env(db_url, port, args.batch_size)
        use(env)
        seed(n)
        msg = our_message()
        raw_built = raw_email(port, min(n, 2000), msg)
        worker = start_worker(env, args.concurrency)
        try:
            time.sleep(3)  # worker start-up is not part of the pipeline
            rounds = [one_round(port, msg, n, i * n) for i in range(args.rounds)]
        finally:
            worker.terminate()
            worker.wait(30)
        seed_more = 1000
        with_offset(seed_more, n * args.rounds)
        parts = breakdown(seed_more)
    print(
        f"subscribers            {n}"
        + (f" per round, {args.rounds} rounds" if args.rounds > 1 else "")
    )
    print(f"worker processes       {args.concurrency}  (batch size {args.batch_size})")
    for i, r in enumerate(rounds, 1):
        label = f"round {i}" if args.rounds > 1 else "run"
        print(
            f"{label:<22} claimed {r.claimed} in {r.claim_seconds:.2f}s "
            f"({r.claimed / r.claim_seconds:,.0f}/s); sent {r.sent} in {r.seconds:.2f}s: "
            f"{r.pipeline:,.0f} emails/s, raw loop {r.raw_before:,.0f} before and "
            f"{r.raw_after:,.0f} after: ratio {r.ratio:.2f}"
        )
    # The lower median: with an even count, the round that flatters least.
    mid = sorted(rounds, key=lambda r: r.ratio)[(len(rounds) - 1) // 2]
    raw = (mid.raw_before + mid.raw_after) / 2
    print(f"raw smtplib, prebuilt  {raw:,.0f} emails/s  (our message as bytes, one connection)")
    print(f"raw smtplib, built     {raw_built:,.0f} emails/s  (an EmailMessage per message)")
    print(f"pipeline               {mid.pipeline:,.0f} emails/s  (dispatch to last commit)")
    print(
        f"ratio                  {mid.ratio:.2f} of prebuilt (median round), "
        f"{mid.pipeline / raw_built:.2f} of built"
    )
    print("one process, per message (ms):")
    for name, ms in parts.items():
        print(f"  {name:<26} {ms:6.2f}")
    if args.drain:
        drained, seconds = drain_421(args.drain, args.concurrency, args.batch_size)
        print(
            f"421 to 10% of messages {drained} of {args.drain} sent in {seconds:.1f}s  (drain time)"
        )


if __name__ == "__main__":
    main()
