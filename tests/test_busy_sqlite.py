"""One long writer on the embedded default (SQLite) keeps nobody waiting: while an operator
imports a large list under `nurture run`, readers keep signing up, every page answers, the
health check says the database is fine, and every signup answered "check your inbox" is
recorded. (The full-size figures, 100,000 rows and 150 signups: bench/busy_sqlite.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import FIXTURES, ROOT, TEST_DATA_KEY
from tests.support import free_port, wait_until

pytestmark = pytest.mark.slow

ROWS = 20_000  # held the write lock for about 10 s in one transaction before
SIGNUPS = 60
# A page must not wait for the import: far less than the import takes, far more than a page.
ANSWER_WITHIN = 3.0


def _answer(url: str, data: dict[str, str] | None = None) -> tuple[int, float, str]:
    start = time.monotonic()
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=30) as r:
            return r.status, time.monotonic() - start, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - start, ""
    except OSError:
        return 0, time.monotonic() - start, ""  # not listening (yet), or gone


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(
        NURTURE_DATA_KEY=TEST_DATA_KEY,
        NURTURE_SECRET_KEY="busy-test-secret-0a9b8c7d6e",
        NURTURE_RATE_LIMIT="false",
        NURTURE_DISPATCH_INTERVAL="1",
        NURTURE_BASE_URL=f"http://127.0.0.1:{port}",
        PYTHONPATH=str(ROOT),
    )

    def nurture(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "nurture.cli", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    nurture("db", "upgrade")
    nurture("sequences", "apply", str(FIXTURES / "sequences" / "quick"))
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "run", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        healthy = f"http://127.0.0.1:{port}/healthz"
        assert wait_until(lambda: _answer(healthy)[0] == 200, 60)
        yield tmp_path, env, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def _sign_up(base: str, i: int, answers: list[tuple[int, float]]) -> None:
    status, took, page = _answer(f"{base}/subscribe/quick")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    answers.append((status, took))
    if token is None:
        return
    form = {"email": f"reader{i}@signup.example", "csrf_token": token[1], "website": ""}
    status, took, _ = _answer(f"{base}/subscribe/quick", form)
    answers.append((status, took))


def test_a_long_import_keeps_no_signup_or_page_waiting(
    embedded: tuple[Path, dict[str, str], int],
) -> None:
    folder, env, port = embedded
    base = f"http://127.0.0.1:{port}"
    csv = folder / "big.csv"
    csv.write_text("email,first_name\n" + "".join(f"p{i}@list.example,P{i}\n" for i in range(ROWS)))
    importing = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "subscribers", "import", str(csv),
         "--sequence", "quick", "--confirmed"],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    answers: list[tuple[int, float]] = []
    health: list[tuple[int, float]] = []
    time.sleep(1.5)  # the import is writing now
    threads = [threading.Thread(target=_sign_up, args=(base, i, answers)) for i in range(SIGNUPS)]
    for i, t in enumerate(threads):
        t.start()
        if i % 10 == 0:
            status, took, _ = _answer(f"{base}/healthz")
            health.append((status, took))
    for t in threads:
        t.join(60)
    out, err = importing.communicate(timeout=600)
    assert importing.returncode == 0, err
    assert f"{ROWS} new" in out
    assert [a for a in answers if a[0] != 200] == []  # no 500, no 503
    assert [h for h in health if h[0] != 200] == []
    slowest = max(took for _, took in answers + health)
    assert slowest < ANSWER_WITHIN, f"a page waited {slowest:.1f}s for the import"
    engine = create_engine(f"sqlite:///{folder / 'nurture.db'}")

    def recorded() -> int:
        with engine.connect() as conn:
            q = "SELECT count(*) FROM consents WHERE source = 'web-form'"
            return int(conn.execute(text(q)).scalar() or 0)

    # Every "check your inbox" became a signup (the worker retries while the import writes).
    assert wait_until(lambda: recorded() == SIGNUPS, 120), recorded()
    engine.dispose()
    log = (folder / "run.log").read_text(errors="replace")
    assert "database is locked" not in log and "could not record" not in log
