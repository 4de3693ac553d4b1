"""Claiming at database speed: 1,000,000 enrollments on a scratch PostgreSQL database, half
of them due (at times spread over the last day), half due tomorrow. Prints how long a claim
of the first 1,000 due takes (one dispatch slice: the statement and its commit; the
process's first connection and compile are timed apart, as they come once) and the
slices after it, then how many claims a second one dispatch pass makes over the rest, and
where the server spends one slice (its EXPLAIN ANALYZE, rolled back).

    python -m bench.claims [--enrollments 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.support import runtime_from_env, scratch_postgres

FIXTURE_SLUG = "quick"


def build(n: int) -> None:
    """n subscribers and their enrollments, written by the database itself (the claim never
    reads a sealed column, so theirs hold a placeholder)."""
    from bench.throughput import FIXTURE
    from nurture.db import get_engine, transaction
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import live_steps
    from nurture.sequences.spec import load_folder

    with transaction() as s:
        apply_spec(s, load_folder(FIXTURE))
        seq_id = s.scalar(text("SELECT id FROM sequences WHERE slug = :s"), {"s": FIXTURE_SLUG})
        step_id = live_steps(s, seq_id)[0].id
        s.execute(
            text(
                "INSERT INTO subscribers (public_id, email_index, canonical_index, email_sealed,"
                " timezone, status, created_at, confirmed_at)"
                " SELECT md5('p' || g), md5('e' || g), md5('c' || g), 'sealed', 'UTC',"
                " 'confirmed', now(), now() FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
        s.execute(
            text(
                "INSERT INTO enrollments (subscriber_id, sequence_id, status, next_step_id,"
                " next_due_at, created_at, started_at)"
                " SELECT id, :seq, 'active', :step,"
                "  CASE WHEN id % 2 = 0 THEN now() - random() * interval '1 day'"
                "  ELSE now() + interval '1 day' END, now(), now() FROM subscribers"
            ),
            {"seq": seq_id, "step": step_id},
        )
    # As autovacuum leaves a table that was filled: hint bits set, statistics known.
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def warm_up() -> float:
    """Seconds for what a dispatcher pays once per process, not per claim: the pool's first
    connection and the claim statement's first compile and plan (a claim of none)."""
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.delivery.dispatch import claim_due

    start = time.perf_counter()
    with transaction() as s:
        assert claim_due(s, now(), 0, timedelta(minutes=5)).ids == []
    return time.perf_counter() - start


def slices(times: int) -> tuple[list[float], tuple[datetime, int]]:
    """Seconds for each of the first `times` claims of 1,000 (statement and commit), each
    starting where the previous one ended, as a dispatch pass goes; and where the last
    ended."""
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.delivery.dispatch import START, claim_due

    seconds: list[float] = []
    after = START
    for _ in range(times):
        start = time.perf_counter()
        with transaction() as s:
            claimed = claim_due(s, now(), 1000, timedelta(minutes=5), after)
        seconds.append(time.perf_counter() - start)
        assert len(claimed.ids) == 1000
        after = claimed.last
    return seconds, after


def breakdown(after: tuple[datetime, int]) -> list[str]:
    """Where the server spends one slice: EXPLAIN ANALYZE of the claim of the next 1,000
    (rolled back, so the pass after it still finds them due), as indented lines: each plan
    node's time (including the nodes under it) and the WAL it wrote, then the foreign-key
    checks the inserted deliveries fire."""
    from nurture.clock import now
    from nurture.db import transaction
    from nurture.delivery.dispatch import CLAIM

    at = now()
    params = {"at": at, "limit": 1000, "after_due": after[0], "after_id": after[1],
              "lease_until": at + timedelta(minutes=5)}  # fmt: skip
    with transaction() as s:
        conn = s.connection()
        compiled = CLAIM.compile(dialect=conn.dialect)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + str(compiled),
            compiled.construct_params(params),
        )
        report = cursor.fetchone()[0][0]
        s.rollback()
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        if node["Actual Total Time"] >= 0.5:
            name = " ".join(
                part
                for part in (
                    node.get("Operation", node["Node Type"]),
                    f"on {node['Relation Name']}" if "Relation Name" in node else "",
                    f"using {node['Index Name']}" if "Index Name" in node else "",
                    f"[{node['Subplan Name']}]" if "Subplan Name" in node else "",
                )
                if part
            )
            took, wal = node["Actual Total Time"], node.get("WAL Bytes", 0) / 1024
            lines.append(
                f"{'  ' * depth}{name:<{60 - 2 * depth}} {took:6.1f} ms  WAL {wal:5.0f} KiB"
            )
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(report["Plan"], 0)
    for trigger in report.get("Triggers", []):
        lines.append(
            f"{trigger.get('Constraint Name', trigger['Trigger Name']):<60} "
            f"{trigger['Time']:6.1f} ms  ({trigger['Calls']:,} calls)"
        )
    lines.append(f"{'all of it, on the server':<60} {report['Execution Time']:6.1f} ms")
    return lines


def claim_rate() -> tuple[int, float]:
    """One dispatch pass (reclaim + claim in slices of 1,000, as beat runs it) over all
    that is still due: how many, and claims a second."""
    from nurture.delivery.dispatch import dispatch_once

    start = time.perf_counter()
    claimed = dispatch_once(lambda ids: None, limit=1000).claimed
    return claimed, claimed / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.enrollments < 42_000:
        # Half are due, and the timed slices and the explained one take 21,000 of them.
        parser.error("--enrollments: at least 42,000 (21 slices of 1,000 due, half of them due)")
    from nurture.migrations import upgrade

    with scratch_postgres() as db_url:
        os.environ["NURTURE_DATABASE_URL"] = db_url
        os.environ.setdefault("NURTURE_SECRET_KEY", "bench-secret-key-0123456789")
        upgrade(db_url)
        runtime_from_env()
        start = time.perf_counter()
        build(args.enrollments)
        built = time.perf_counter() - start
        warm = warm_up()
        first, after = slices(20)
        server = breakdown(after)
        claimed, rate = claim_rate()
    ms = [x * 1000 for x in first]
    rest = sorted(ms[1:])
    print(f"enrollments            {args.enrollments:,} (half due), built in {built:.1f}s")
    print(f"process warm-up        {warm * 1000:.1f} ms  (first connection, compile, plan: once)")
    print(f"first 1,000 due        {ms[0]:.1f} ms  (one slice: the statement and its commit)")
    print(
        f"next 19 slices         median {statistics.median(rest):.1f} ms, "
        f"best {rest[0]:.1f} ms, worst {rest[-1]:.1f} ms"
    )
    print(f"claim rate             {rate:,.0f} claims/s  (one pass claiming {claimed:,})")
    print("one slice on the server (EXPLAIN ANALYZE of the 21st, rolled back; inclusive times):")
    for line in server:
        print(f"  {line}")


if __name__ == "__main__":
    main()
