"""The reports `nurture stats`, `schedule` and the dashboard read, on a large list: how long
each takes on PostgreSQL.

    python -m bench.reports [--readers 100000] [--deliveries 1000000]

Builds one ten-step sequence with a quiet day, `--readers` confirmed readers in five zones
(one in twenty paused, one in fifty on a break), their next sends spread over a week, and
`--deliveries` sent or failed deliveries with clicks, bookings, bounces and complaints; then
times each report function (best of three) as nurture/reports.py runs it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from bench.support import runtime_from_env, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sequences" / "quick"
STEPS = 10
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Tokyo", None]


def _sequence_folder(where: Path) -> Path:
    folder = where / "bench-reports"
    shutil.copytree(FIXTURE, folder)
    spec = (folder / "sequence.yaml").read_text().split("steps:\n")[0]
    spec = spec.replace("slug: quick", "slug: bench-reports")
    spec += 'quiet_days: ["12-25"]\nsteps:\n'
    spec += "".join(
        f'  - {{key: step-{n}, delay: 1d, subject: "Step {n}", body: one.md}}\n'
        for n in range(STEPS)
    )
    (folder / "sequence.yaml").write_text(spec)
    return folder


def seed(readers: int, deliveries: int) -> None:
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.delivery.models import Delivery, DeliveryStatus
    from nurture.events.models import Event, EventKind
    from nurture.models import Enrollment, EnrollmentStatus, Subscriber, SubscriberStatus
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import live_steps
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.addresses import person_columns

    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, transaction() as s:
        apply_spec(s, load_folder(_sequence_folder(Path(tmp))))
        seq_id = s.scalar(text("SELECT id FROM sequences WHERE slug = 'bench-reports'"))
        steps = [st.id for st in live_steps(s, seq_id)]
    t = now()
    per_reader = max(1, min(STEPS, -(-deliveries // readers)))
    made = 0
    for start in range(0, readers, 5000):
        with transaction() as s:
            people = [
                {
                    **person_columns(f"reader{i}@example.com", f"R{i}"),
                    "timezone": ZONES[i % len(ZONES)],
                    "status": SubscriberStatus.CONFIRMED,
                    "created_at": t - timedelta(days=rng.randrange(90)),
                    "confirmed_at": t,
                }
                for i in range(start, min(start + 5000, readers))
            ]
            ids = list(s.scalars(insert(Subscriber).returning(Subscriber.id), people))
            rows = []
            for n, sub_id in enumerate(ids, start):
                paused = n % 20 == 0
                rows.append(
                    {
                        "subscriber_id": sub_id,
                        "sequence_id": seq_id,
                        "status": EnrollmentStatus.PAUSED if paused else EnrollmentStatus.ACTIVE,
                        "next_step_id": steps[per_reader % STEPS],
                        "next_due_at": t + timedelta(minutes=rng.randrange(-60, 7 * 24 * 60)),
                        "last_sent_at": t - timedelta(days=1),
                        "started_at": t - timedelta(days=per_reader),
                        "paused_until": t + timedelta(days=9) if n % 50 == 0 else None,
                        "created_at": people[n - start]["created_at"],
                        "source": "import",
                    }
                )
            enrolled = list(s.scalars(insert(Enrollment).returning(Enrollment.id), rows))
            sends, events = [], []
            for e_id, sub_id in zip(enrolled, ids, strict=True):
                for k in range(per_reader):
                    if made >= deliveries:
                        break
                    made += 1
                    failed = rng.random() < 0.01
                    at = t - timedelta(days=per_reader - k, minutes=rng.randrange(120))
                    sends.append(
                        {
                            "enrollment_id": e_id,
                            "step_id": steps[k],
                            "status": DeliveryStatus.FAILED if failed else DeliveryStatus.SENT,
                            "due_at": at,
                            "claimed_at": at,
                            "sent_at": None if failed else at,
                            "attempts": 1,
                        }
                    )
                roll = rng.random()
                kind = (
                    EventKind.BOOKED if roll < 0.02
                    else EventKind.BOUNCED if roll < 0.025
                    else EventKind.COMPLAINED if roll < 0.026
                    else EventKind.CLICKED if roll < 0.2
                    else None
                )  # fmt: skip
                if kind is not None:
                    step = steps[0] if kind == EventKind.CLICKED else None
                    events.append(
                        {"kind": kind, "subscriber_id": sub_id, "step_id": step, "data": {},
                         "created_at": t - timedelta(hours=rng.randrange(24 * 30))}
                    )  # fmt: skip
            for i in range(0, len(sends), 10000):
                s.execute(insert(Delivery), sends[i : i + 10000])
            if events:
                s.execute(insert(Event), events)
    with transaction() as s:
        s.execute(text("ANALYZE"))


def _best(fn: Callable[[], Any], times: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(times):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    args = parser.parse_args()
    with scratch_postgres() as db_url:
        os.environ.update(
            {
                "NURTURE_DATABASE_URL": db_url,
                "NURTURE_SECRET_KEY": "bench-secret-key-0123456789",
                "NURTURE_TIMEZONE": "America/New_York",
                "NURTURE_MAIL_URL": "memory://",
            }
        )
        from nurture.migrations import upgrade

        upgrade(db_url)
        runtime_from_env()
        started = time.perf_counter()
        seed(args.readers, args.deliveries)
        print(
            f"seeded {args.readers:,} readers, {args.deliveries:,} deliveries in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        _time_reports()


def _time_reports() -> None:
    from nurture.db import reading
    from nurture.reports import activity, deliverability, list_deliveries, schedule, stats

    cases: list[tuple[str, Callable[[Any], Any]]] = [
        ("schedule, 7 days (per day)", lambda s: len(schedule(s, timedelta(days=7)).rows)),
        ("schedule, 2 days (per hour)", lambda s: len(schedule(s, timedelta(days=2)).rows)),
        ("stats (funnel per step)", lambda s: len(stats(s))),
        ("deliverability, 30 days", lambda s: deliverability(s).sent),
        ("activity, 90 days", lambda s: len(activity(s, 90))),
        ("failed deliveries, 100", lambda s: len(list_deliveries(s, "failed", 100))),
    ]
    for name, case in cases:
        with reading() as s:
            took, size = _best(lambda case=case, s=s: case(s))
        print(f"{name:32} {took * 1000:8.0f} ms   ({size})", flush=True)


if __name__ == "__main__":
    main()
