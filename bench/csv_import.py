"""Importing a large CSV: rows per second and peak memory, on SQLite and PostgreSQL, and
how long its --dry-run takes before (everyone new) and after (everyone known), beside the
same import run again (everyone known, for real).

    python -m bench.csv_import [--rows 100000]

Each run happens in a fresh child process (its own peak RSS) on a throw-away database: a
temp SQLite file, and a temp PostgreSQL database when one is reachable. The small run next
to the big one shows whether memory stays flat as the file grows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.support import runtime_from_env

PG_ADMIN_URL = os.environ.get(
    "NURTURE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ZONES = ["America/New_York", "America/Chicago", "Europe/Paris", "", "Asia/Tokyo"]

SEQUENCE_YAML = """slug: bench
name: Bench sequence
from: {name: Bench Practice, email: hello@example.org}
consult: {url: "https://example.org/book", text: Book a consult}
postal_address: 1 Example Street, Columbia, MD 21044
timezone: America/New_York
steps:
  - {key: one, delay: "0", subject: "One", body: one.md}
  - {key: two, delay: 2d, subject: "Two", body: one.md}
"""


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,first_name,timezone\n")
        for i in range(rows):
            f.write(f"person{i}@example.org,Name{i % 977},{ZONES[i % len(ZONES)]}\n")


def child(db_url: str, csv_path: Path, folder: Path) -> None:
    """Runs in its own process: migrate, apply the sequence, import, report as JSON."""
    os.environ.update(
        NURTURE_DATABASE_URL=db_url,
        NURTURE_MAIL_URL="memory://",
        NURTURE_BROKER_URL="memory://",
        NURTURE_SECRET_KEY="bench-secret",
    )
    from nurture.db import transaction
    from nurture.migrations import upgrade
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.spec import load_folder
    from nurture.subscribers.importing import import_csv

    upgrade(runtime_from_env().settings.database_url)
    with transaction() as s:
        apply_spec(s, load_folder(folder))
    # The dry run an operator runs first (everyone new), then the import, then a dry run of
    # the same file again (everyone known: the one-by-one path through the consent rules).
    dry_new = _timed(lambda: import_csv(csv_path, "bench", confirmed=True, dry_run=True))
    start = time.perf_counter()
    result = import_csv(csv_path, "bench", confirmed=True)
    seconds = time.perf_counter() - start
    dry_known = _timed(lambda: import_csv(csv_path, "bench", confirmed=True, dry_run=True))
    again = _timed(lambda: import_csv(csv_path, "bench", confirmed=True))  # the same, for real
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "rows": result.added,
                "seconds": round(seconds, 2),
                "rows_per_s": round(result.added / seconds),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "dry_new_s": round(dry_new, 2),
                "dry_known_s": round(dry_known, 2),
                "again_s": round(again, 2),
            }
        )
    )


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _postgres() -> tuple[str, str] | None:
    """(url of a new temp database, its name), or None when PostgreSQL is not reachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nurture_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        return None
    finally:
        admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_one(label: str, db_url: str, csv_path: Path, folder: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.csv_import", "--child", db_url, str(csv_path), str(folder)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    figures: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["database"] = label
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--child", nargs=3, metavar=("DB_URL", "CSV", "FOLDER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "bench-sequence"
        folder.mkdir()
        (folder / "sequence.yaml").write_text(SEQUENCE_YAML)
        (folder / "one.md").write_text("Hello {{ subscriber.first_name }}.\n")
        results = []
        for rows in sorted({min(10_000, args.rows), args.rows}):
            csv_path = root / f"people-{rows}.csv"
            write_csv(csv_path, rows)
            size = csv_path.stat().st_size / 1e6
            print(f"{rows} rows ({size:.1f} MB CSV)", flush=True)
            sqlite_url = f"sqlite:///{root / f'bench-{rows}.db'}"
            results.append(run_one("sqlite", sqlite_url, csv_path, folder))
            print(f"  {results[-1]}", flush=True)
            pg = _postgres()
            if pg is None:
                print("  postgresql: not reachable, skipped", flush=True)
                continue
            try:
                results.append(run_one("postgresql", pg[0], csv_path, folder))
                print(f"  {results[-1]}", flush=True)
            finally:
                _drop_postgres(pg[1])
        print(
            "\ndatabase     rows     seconds  rows/s   peak RSS (MiB)  "
            "dry run new, dry run known, import again (s)"
        )
        for r in results:
            print(
                f"{r['database']:<12} {r['rows']:<8} {r['seconds']:<8} {r['rows_per_s']:<8} "
                f"{r['peak_rss_mib']:<15} {r['dry_new_s']}, {r['dry_known_s']}, {r['again_s']}"
            )


if __name__ == "__main__":
    main()
