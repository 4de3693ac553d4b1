"""Every dashboard page on a large list: how long each takes to answer.

    python -m bench.dashboard [--readers 100000] [--deliveries 1000000] [--repeat 5]

A scratch PostgreSQL database with `--readers` people (sealed addresses, as in production),
each in both sequences (the default one, seven steps, and the four-step test one), and
`--deliveries` sent emails among them; events for 120 days (signups, confirmations, clicks,
bookings, bounces, complaints, unsubscribes), some failed deliveries. Then each page through
the real app (in process: the server's time, no network), logged in as an operator; prints
the median and the slowest of `--repeat` answers. The goal is under 300 ms each.

Overview, this week and sequences answer from a snapshot that a background thread counts
(nurture/admin/snapshots.py): their page times are with the snapshot there, and the time
each count takes is printed first, measured alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from sqlalchemy import insert, select, text

from bench.support import runtime_from_env, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = [
    ROOT / "templates" / "sequences" / "partner-refuses-therapy",
    ROOT / "tests" / "fixtures" / "sequences" / "quick",
]
GOAL_MS = 300
STATUSES = [  # (share in 1000, subscriber status, enrollment status)
    (850, "confirmed", "active"),
    (50, "pending", "pending"),
    (50, "unsubscribed", "unsubscribed"),
    (30, "confirmed", "booked"),
    (12, "bounced", "bounced"),
    (3, "complained", "complained"),
    (5, "confirmed", "paused"),
]


def _status(i: int) -> tuple[str, str]:
    n = (i * 7919) % 1000
    for share, sub, enrol in STATUSES:
        if n < share:
            return sub, enrol
        n -= share
    return "confirmed", "active"


def seed(readers: int, deliveries: int) -> str:
    """Build the list; returns one reader's public id (for the timeline page)."""
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.models import Enrollment, Subscriber
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.addresses import person_columns

    with transaction() as s:
        for folder in SEQUENCES:
            apply_spec(s, load_folder(folder))
    with transaction() as s:
        seq_ids = list(s.scalars(text("SELECT id FROM sequences ORDER BY id")))
    t = now()
    for start in range(0, readers, 5000):
        with transaction() as s:
            people = []
            for i in range(start, min(start + 5000, readers)):
                status, _ = _status(i)
                people.append(
                    {
                        **person_columns(f"reader{i}@example.com", f"R{i}"),
                        "timezone": "America/New_York" if i % 3 else None,
                        "status": status,
                        "created_at": t,
                        "confirmed_at": t if status != "pending" else None,
                    }
                )
            ids = list(s.scalars(insert(Subscriber).returning(Subscriber.id), people))
            s.execute(
                insert(Enrollment),
                [
                    {
                        "subscriber_id": sub_id,
                        "sequence_id": seq_id,
                        "status": _status(n)[1],
                        "created_at": t,
                        "started_at": t if _status(n)[0] != "pending" else None,
                        "source": "import",
                    }
                    for n, sub_id in enumerate(ids, start)
                    for seq_id in seq_ids
                ],
            )
    with transaction() as s:
        _spread(s, readers, deliveries)
        first = s.scalar(select(Subscriber.public_id).order_by(Subscriber.id).limit(1))
    with transaction() as s:
        s.execute(text("ANALYZE"))
    assert first is not None
    return first


def _spread(s: object, readers: int, deliveries: int) -> None:
    """Times, deliveries and events in SQL: far faster than a million rows from Python."""
    run = s.execute  # type: ignore[attr-defined]
    # Enrollments: created over the last 120 days; active ones due over the next week.
    run(
        text(
            """
            UPDATE enrollments SET
              created_at = now() - (id % 120) * interval '1 day' - (id % 24) * interval '1 hour',
              started_at = CASE WHEN started_at IS NULL THEN NULL
                           ELSE now() - (id % 120) * interval '1 day' END,
              next_due_at = CASE WHEN status = 'active'
                            THEN now() + (id % (7 * 24)) * interval '1 hour' END,
              next_step_id = CASE WHEN status IN ('active', 'paused') THEN
                (SELECT st.id FROM steps st WHERE st.sequence_id = enrollments.sequence_id
                 ORDER BY st.position DESC LIMIT 1) END
            """
        )
    )
    # Deliveries: every step of each started enrollment, in step order, up to `deliveries`.
    run(
        text(
            """
            INSERT INTO deliveries (enrollment_id, step_id, status, due_at, claimed_at,
                                    attempts, sent_at, message_id, error)
            SELECT e.id, st.id,
                   CASE WHEN (e.id + st.position) % 500 = 0 THEN 'failed' ELSE 'sent' END,
                   e.started_at + st.position * interval '2 days',
                   e.started_at + st.position * interval '2 days', 1,
                   CASE WHEN (e.id + st.position) % 500 = 0 THEN NULL
                        ELSE e.started_at + st.position * interval '2 days' END,
                   '<' || e.id || '.' || st.id || '@bench>',
                   CASE WHEN (e.id + st.position) % 500 = 0
                        THEN '550 5.1.1 mailbox unknown' END
            FROM enrollments e JOIN steps st ON st.sequence_id = e.sequence_id
            WHERE e.started_at IS NOT NULL
            ORDER BY st.position, e.id
            LIMIT :n
            """
        ),
        {"n": deliveries},
    )
    # Events: a signup and a confirmation per enrollment, clicks on one email in five, and
    # what ended the others' sequences.
    run(
        text(
            """
            INSERT INTO events (kind, subscriber_id, sequence_id, data, created_at)
            SELECT 'signed_up', subscriber_id, sequence_id, '{}'::json, created_at FROM enrollments
            UNION ALL
            SELECT 'confirmed', subscriber_id, sequence_id, '{}'::json, started_at FROM enrollments
              WHERE started_at IS NOT NULL
            UNION ALL
            SELECT status, subscriber_id, sequence_id, '{}',
                   created_at + interval '5 days' FROM enrollments
              WHERE status IN ('unsubscribed', 'booked', 'bounced', 'complained', 'paused')
            """
        )
    )
    run(
        text(
            """
            INSERT INTO events (kind, subscriber_id, sequence_id, step_id, delivery_id, data,
                                created_at)
            SELECT 'clicked', e.subscriber_id, e.sequence_id, d.step_id, d.id, '{}'::json,
                   d.sent_at + interval '1 hour'
            FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id
            WHERE d.id % 5 = 0 AND d.status = 'sent'
            """
        )
    )


def _time(client: object, method: str, path: str, repeat: int, **kw: object) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        resp = client.open(path, method=method, **kw)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code in (200, 303), (path, resp.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with scratch_postgres() as db_url:
        os.environ.update(
            {
                "NURTURE_DATABASE_URL": db_url,
                "NURTURE_BROKER_URL": "memory://",
                "NURTURE_MAIL_URL": "memory://",
                "NURTURE_SECRET_KEY": "bench-secret-key-0123456789",
                "NURTURE_BASE_URL": "http://localhost",
                "NURTURE_RATE_LIMIT": "false",
            }
        )
        from nurture.migrations import upgrade

        upgrade(db_url)
        runtime = runtime_from_env()
        started = time.perf_counter()
        public_id = seed(args.readers, args.deliveries)
        with runtime.reading() as s:
            counts = {
                t: s.scalar(text(f"SELECT count(*) FROM {t}"))
                for t in ("subscribers", "enrollments", "deliveries", "events")
            }
        print(f"seeded in {time.perf_counter() - started:.0f} s: {counts}", flush=True)
        _measure(runtime, public_id, args.readers, args.repeat)


def _measure(runtime: object, public_id: str, readers: int, repeat: int) -> None:
    import re

    from nurture.admin import auth
    from nurture.admin.services import add_operator
    from nurture.web.app import create_app

    with runtime.transaction() as s:  # type: ignore[attr-defined]
        url = add_operator(s, "bench", "bench@example.org", by="bench")
    token = url.rsplit("/", 1)[1]
    with runtime.transaction() as s:  # type: ignore[attr-defined]
        auth.finish_setup(s, token, "a long enough password", "")
    from nurture.admin import queries
    from nurture.admin.snapshots import snapshots
    from nurture.admin.views import HEAVY

    print("\nbackground counts (each alone, from nurture/reports.py and the dashboard's own):")
    for name, compute in HEAVY.items():
        with runtime.reading() as s:  # type: ignore[attr-defined]
            started = time.perf_counter()
            compute(s)
            print(f"  {name:26} {time.perf_counter() - started:7.2f} s", flush=True)
    with runtime.reading() as s:  # type: ignore[attr-defined]
        started = time.perf_counter()
        queries.timeline(s, public_id)
        print(f"  {'(timeline, not cached)':26} {time.perf_counter() - started:7.2f} s")
    client = create_app(runtime).test_client()  # type: ignore[arg-type]
    page = client.get("/admin/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post(
        "/admin/login",
        data={"csrf_token": csrf, "name": "bench", "password": "a long enough password"},
    )
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/").text).group(1)  # type: ignore[union-attr]
    for name, compute in HEAVY.items():  # the warm-up login started: wait for it
        snapshots().get(name, compute)
    pages = [
        ("overview", "GET", "/admin/", {}),
        ("this week", "GET", "/admin/week", {}),
        ("readers", "GET", "/admin/readers", {}),
        ("readers: bounced", "GET", "/admin/readers?status=bounced", {}),
        (
            "readers: find by address",
            "POST",
            "/admin/readers",
            {"data": {"csrf_token": csrf, "email": f"reader{readers // 2}@example.com"}},
        ),
        ("one reader's timeline", "GET", f"/admin/readers/{public_id}", {}),
        ("sequences", "GET", "/admin/sequences", {}),
        ("failed deliveries", "GET", "/admin/failed", {}),
        ("audit log", "GET", "/admin/audit", {}),
    ]
    print(f"\n{'page':28} {'median':>9} {'slowest':>9}  (goal < {GOAL_MS} ms)")
    over = []
    for name, method, path, kw in pages:
        times = _time(client, method, path, repeat, **kw)
        median, worst = statistics.median(times), max(times)
        flag = "" if median < GOAL_MS else "  over the goal"
        if flag:
            over.append(name)
        print(f"{name:28} {median:7.0f}ms {worst:7.0f}ms{flag}", flush=True)
    print("every page within the goal" if not over else f"over the goal: {', '.join(over)}")


if __name__ == "__main__":
    main()
