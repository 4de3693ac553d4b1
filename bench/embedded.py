"""The embedded default (`nurture run`: SQLite, the SQLite broker) under two kinds of stress.

    python -m bench.embedded [--rows 100000] [--signups 150] [--probes 200]

1. A long writer: an operator imports `--rows` readers while `--signups` readers sign up at
   once (16 at a time) and the health check is polled. Prints the import's time, how long
   pages took while it ran, how many answered 5xx, and how many signups answered "check your
   inbox" were never recorded.
2. Keep-alive timing: on one keep-alive connection, a signup for a known (confirmed) or a
   new address, then at once `GET /robots.txt`. If the signup's work ran on the connection
   after the answer, the next request would wait for it, and more for one kind of address:
   prints both medians and their ratio (the answer must not tell them apart).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sequences" / "quick"


class Install:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
        self.env.update(
            NURTURE_SECRET_KEY="bench-embedded-secret-5e4d3c2b1a",
            NURTURE_DATA_KEY="kdBWw5f1y2G9oXn3tqD1F0CwV9tYh6Jc3mXzq8Rr4uE=",
            NURTURE_RATE_LIMIT="false",
            NURTURE_DISPATCH_INTERVAL="2",
            NURTURE_BASE_URL=f"http://127.0.0.1:{self.port}",
            PYTHONPATH=str(ROOT),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def nurture(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nurture.cli", *args],
            cwd=self.folder, env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout

    def start(self) -> None:
        self.nurture("db", "upgrade")
        self.nurture("sequences", "apply", str(FIXTURE))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nurture.cli", "run", "--port", str(self.port)],
            cwd=self.folder, env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while _get(self.port, "/healthz")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit("nurture run did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def recorded(self, source: str = "web-form") -> int:
        engine = create_engine(f"sqlite:///{self.folder / 'nurture.db'}")
        try:
            with engine.connect() as conn:
                q = text("SELECT count(*) FROM consents WHERE source = :s")
                return int(conn.execute(q, {"s": source}).scalar() or 0)
        finally:
            engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode()
        conn.close()
        return r.status, time.perf_counter() - start, body
    except OSError:
        return 0, time.perf_counter() - start, ""


def _sign_up(conn: http.client.HTTPConnection, email: str) -> tuple[int, float]:
    conn.request("GET", "/subscribe/quick")
    page = conn.getresponse().read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    body = urllib.parse.urlencode({"email": email, "csrf_token": token[1] if token else ""})
    start = time.perf_counter()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", "/subscribe/quick", body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status, time.perf_counter() - start


def long_writer(install: Install, rows: int, signups: int) -> None:
    csv = install.folder / "big.csv"
    csv.write_text("email,first_name\n" + "".join(f"p{i}@list.example,P{i}\n" for i in range(rows)))
    start = time.perf_counter()
    importing = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "subscribers", "import", str(csv),
         "--sequence", "quick", "--confirmed"],
        cwd=install.folder, env=install.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(2)
    answers: list[tuple[int, float]] = []
    health: list[tuple[int, float]] = []
    stop = threading.Event()

    def poll_health() -> None:
        while not stop.is_set():
            status, took, _ = _get(install.port, "/healthz")
            health.append((status, took))
            time.sleep(0.5)

    poller = threading.Thread(target=poll_health)
    poller.start()

    def one(i: int) -> tuple[int, float]:
        conn = http.client.HTTPConnection("127.0.0.1", install.port, timeout=120)
        try:
            return _sign_up(conn, f"reader{i}@signup.example")
        except OSError:
            return 0, 0.0
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(signups)))
    importing.wait()
    took = time.perf_counter() - start
    stop.set()
    poller.join()
    deadline = time.monotonic() + 300
    while install.recorded() < signups and time.monotonic() < deadline:
        time.sleep(0.5)
    times = sorted(t for _, t in answers)
    print(f"import                 {rows:,} rows in {took:.1f}s (exit {importing.returncode})")
    ok = sum(1 for s, _ in answers if s == 200)
    failed = sum(1 for s, _ in answers if s >= 500)
    print(f"signups answered       {ok} of {signups}; 5xx {failed}; other {signups - ok - failed}")
    print(
        f"signup answer          median {statistics.median(times) * 1000:.0f} ms, "
        f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    )
    bad = [s for s, _ in health if s != 200]
    print(
        f"health checks          {len(health)}, not 200: {len(bad)}, "
        f"slowest {max(t for _, t in health) * 1000:.0f} ms"
    )
    print(f"signups lost           {signups - install.recorded()}")


def keepalive(install: Install, probes: int) -> None:
    # Known: confirmed readers (added by the operator); new: never seen before.
    csv = install.folder / "known.csv"
    csv.write_text("email\n" + "".join(f"known{i}@probe.example\n" for i in range(probes)))
    install.nurture("subscribers", "import", str(csv), "--sequence", "quick", "--confirmed")
    times: dict[str, list[float]] = {"known": [], "new": []}
    for i in range(probes):
        for kind in ("known", "new"):
            conn = http.client.HTTPConnection("127.0.0.1", install.port, timeout=30)
            status, _ = _sign_up(conn, f"{kind}{i}@probe.example")
            assert status == 200, status
            start = time.perf_counter()
            conn.request("GET", "/robots.txt")  # the next request on the same connection
            conn.getresponse().read()
            times[kind].append(time.perf_counter() - start)
            conn.close()
        time.sleep(0.02)
    known, new = (statistics.median(times[k]) * 1000 for k in ("known", "new"))
    print(f"next request, known    median {known:.2f} ms")
    print(f"next request, new      median {new:.2f} ms")
    print(f"ratio                  {max(known, new) / min(known, new):.3f}  (within 1.10 holds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--signups", type=int, default=150)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    for run in ("long writer", "keep-alive"):
        with tempfile.TemporaryDirectory() as tmp:
            install = Install(Path(tmp))
            install.start()
            try:
                print(f"--- {run}")
                if run == "long writer":
                    long_writer(install, args.rows, args.signups)
                else:
                    keepalive(install, args.probes)
            finally:
                install.stop()


if __name__ == "__main__":
    main()
