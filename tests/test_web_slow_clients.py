"""Slow clients do not starve the web server (issue 19): four connections that each send a
header line every 2 s, never finishing, made /healthz time out after 15 s under `nurture run`.
Here the web server `nurture run` starts (`nurture web`, one process as on one machine) must
go on answering while they trickle. How many it takes to starve it is measured, not asserted
here: bench/slow_clients.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support import free_port, wait_until

pytestmark = pytest.mark.slow
TRICKLE_SECONDS = 2
ANSWER_WITHIN = 5  # "a few seconds"; before, it never came


@pytest.fixture
def web(tmp_path: Path) -> Iterator[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.pop("WEB_CONCURRENCY", None)
    env |= {"PYTHONPATH": str(ROOT), "NURTURE_BROKER_URL": "memory://"}
    nurture = [sys.executable, "-m", "nurture.cli"]
    subprocess.run([*nurture, "db", "upgrade"], cwd=tmp_path, env=env, check=True, timeout=120)
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(
        [*nurture, "web", "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    try:
        assert wait_until(lambda: _healthz(port, timeout=2) is not None, timeout=60)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _healthz(port: int, timeout: float) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
            return int(r.status)
    except OSError:
        return None


def _slowloris(port: int, stop: threading.Event) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: nurture.test\r\n")
        line = 0
        while not stop.wait(TRICKLE_SECONDS):
            s.sendall(b"X-Trickle-%d: a line every two seconds\r\n" % line)
            line += 1


def test_four_clients_trickling_headers_leave_healthz_answering(web: int) -> None:
    stop = threading.Event()
    slow = [threading.Thread(target=_slowloris, args=(web, stop)) for _ in range(4)]
    for t in slow:
        t.start()
    try:
        time.sleep(TRICKLE_SECONDS + 1)  # each has sent a second line: a thread is theirs
        for _ in range(3):  # and it lasts: past gunicorn's own 5 s wait for a first byte
            started = time.monotonic()
            assert _healthz(web, timeout=ANSWER_WITHIN) == 200
            assert time.monotonic() - started < ANSWER_WITHIN
            time.sleep(TRICKLE_SECONDS)
        assert all(t.is_alive() for t in slow)  # still trickling, not sent away
    finally:
        stop.set()
        for t in slow:
            t.join()
