"""Does the signup answer take longer for a new address than for a known one?

    python -m bench.signup_timing [--rounds 200] [--postgres]

Posts the signup form in-process (Flask's test client; no network noise) against a
throw-away SQLite database (or a scratch PostgreSQL database with --postgres), alternating
new addresses with ones already confirmed, and prints the median answer time of each, twice:

  task     what the view does now: check the form, queue one message (in-memory broker)
  inline   the old way, for comparison: look the address up and record it before answering

A ratio new/known near 1.00 means the timing says nothing about who is known.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.support import runtime_from_env

SEQUENCE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sequences" / "quick"


def _setup(database_url: str) -> None:
    os.environ.update(
        {
            "NURTURE_DATABASE_URL": database_url,
            "NURTURE_BROKER_URL": "memory://",
            "NURTURE_MAIL_URL": "memory://",
            "NURTURE_SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "NURTURE_RATE_LIMIT": "false",
        }
    )
    runtime = runtime_from_env()
    from nurture.db import transaction
    from nurture.migrations import upgrade
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import get_sequence
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.enrolling import add_subscriber

    upgrade(runtime.settings.database_url)
    with transaction() as s:
        apply_spec(s, load_folder(SEQUENCE))
        seq = get_sequence(s, "quick")
        for i in range(500):
            add_subscriber(s, f"known{i}@example.com", seq, confirmed=True)


def _measure(app: Any, rounds: int, tag: str) -> tuple[float, float]:
    client = app.test_client()
    page = client.get("/subscribe/quick").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    token = match.group(1)
    times: dict[str, list[float]] = {"new": [], "known": []}
    for i in range(rounds):
        for kind in ("new", "known"):
            email = f"{tag}-{i}@example.com" if kind == "new" else f"known{i % 500}@example.com"
            start = time.perf_counter()
            r = client.post("/subscribe/quick", data={"email": email, "csrf_token": token})
            times[kind].append(time.perf_counter() - start)
            assert r.status_code == 200, r.status_code
    return statistics.median(times["new"]) * 1000, statistics.median(times["known"]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            from bench.support import scratch_postgres

            context: Any = scratch_postgres()
        else:
            from contextlib import nullcontext

            context = nullcontext(f"sqlite:///{tmp}/bench.db")
        with context as url:
            _setup(url)
            from nurture.context import current
            from nurture.web.app import create_app

            task = create_app(current())
            inline = create_app(current(), ENQUEUE_CONFIRMATION=lambda _consent_id: None)
            print(f"{'mode':8} {'new ms':>8} {'known ms':>9} {'new/known':>10}")
            for name, app in (("task", task), ("inline", inline)):
                new, known = _measure(app, args.rounds, name)
                print(f"{name:8} {new:8.2f} {known:9.2f} {new / known:10.2f}", flush=True)


if __name__ == "__main__":
    main()
