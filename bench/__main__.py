"""`python -m bench` (or `make bench`): run every benchmark and print its figures.

    sending throughput   real Redis + PostgreSQL + Celery workers + a C SMTP sink
    claims               the first 1,000 due among 1,000,000 enrollments; claims a second
    signup load          gunicorn under wrk, GET and POST /subscribe
    CSV import           100,000 rows, time and peak memory
    signup timing        new against known addresses: the answer must not tell them apart
    slow clients         clients trickling their headers: how many until /healthz starves
    embedded             `nurture run` on SQLite: a long import under signups; keep-alive
    key rotation         `nurture keys rotate` on 100,000 readers while a worker sends
    reports              stats, schedule and the dashboard's reports on 100,000 readers
    dashboard            every dashboard page on 100,000 readers and 1,000,000 deliveries

Each also runs alone: python -m bench.throughput | bench.claims | bench.signup_load |
bench.csv_import | bench.signup_timing | bench.slow_clients | bench.embedded | bench.rotate |
bench.reports | bench.dashboard.
"""

import sys

from bench import (
    claims,
    csv_import,
    dashboard,
    embedded,
    reports,
    rotate,
    signup_load,
    signup_timing,
    slow_clients,
    throughput,
)

for title, run in (
    ("sending throughput", throughput.main),
    ("claims", claims.main),
    ("signup load", signup_load.main),
    ("CSV import", csv_import.main),
    ("signup timing", signup_timing.main),
    ("slow clients", slow_clients.main),
    ("embedded", embedded.main),
    ("key rotation", rotate.main),
    ("reports", reports.main),
    ("dashboard", dashboard.main),
):
    print(f"\n=== {title} ===", flush=True)
    saved = sys.argv
    sys.argv = [saved[0]]  # each benchmark parses its own (default) options
    try:
        run()
    finally:
        sys.argv = saved
