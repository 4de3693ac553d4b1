"""Slow clients against the web server as `nurture web` starts it: how many it takes to
starve /healthz, and what its threads cost when nobody is slow.

    python -m bench.slow_clients [--threads N] [--workers N] [--slow 0,4,8,...] [--duration 5]

The server is the one `nurture web` runs (nurture.cli.engine._web_command, production
settings, a throw-away SQLite database, broker and mail in memory); --threads and --workers
are passed after it, to compare. Each slow client sends a request line, then one header
line every 2 s, never the end of its headers (slowloris). With them connected, /healthz is
asked five times, one after the other (10 s timeout each): the slowest answer is printed.
Then wrk (when installed) runs --duration seconds against /healthz with 16 connections and
nobody slow: requests/s and p99.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.support import free_port, runtime_from_env, wait_port

TRICKLE_SECONDS = 2.0


def _server_command(port: int, extra: list[str]) -> list[str]:
    from nurture.cli.engine import _web_command

    runtime_from_env()  # the settings _web_command reads, from the environment set below
    return [*_web_command("127.0.0.1", port), *extra]


class SlowClients:
    """`n` connections that never finish their headers, until close()."""

    def __init__(self, port: int, n: int) -> None:
        self.stopped = threading.Event()
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        for s in self.socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        i = 0
        while not self.stopped.wait(TRICKLE_SECONDS):
            for s in self.socks:
                # The server may have closed it (a limit reached): then it stays closed.
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Slow-%d: y\r\n" % i)
            i += 1

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for s in self.socks:
            s.close()


def _slowest_healthz(port: int, tries: int = 5) -> str:
    slowest = 0.0
    for _ in range(tries):
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                r.read()
        except OSError:
            return "no answer within 10 s"
        slowest = max(slowest, time.monotonic() - started)
    return f"slowest of {tries}: {slowest * 1000:.0f} ms"


def _wrk(port: int, duration: int) -> str:
    if not shutil.which("wrk"):
        return "wrk is not installed (apt-get install wrk)"
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}/healthz"],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if not rps or not p99:
        return "wrk gave no figures"
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return f"{float(rps.group(1)):.0f} requests/s, p99 {float(p99.group(1)) * scale:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="override nurture's --threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--slow", default="0,4,8,15,16,31,32,64", help="slow clients to try")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk")
    opts = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env |= {
        "NURTURE_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "NURTURE_BROKER_URL": "memory://",
        "NURTURE_MAIL_URL": "memory://",
        "NURTURE_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "NURTURE_ENV": "production",
        "WEB_CONCURRENCY": str(opts.workers),
    }
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        extra = ["--log-level", "warning"]
        extra += ["--threads", str(opts.threads)] if opts.threads else []
        cmd = _server_command(port, extra)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    subprocess.run([sys.executable, "-m", "nurture.cli", "db", "upgrade"], env=env, check=True)
    server = subprocess.Popen(cmd, env=env, cwd=tmp, start_new_session=True)
    try:
        wait_port(port, timeout=30)
        print(" ".join(cmd[cmd.index("--bind") :]))
        for n in (int(x) for x in opts.slow.split(",")):
            slow = SlowClients(port, n)
            time.sleep(TRICKLE_SECONDS + 1)  # every slow client has sent a second line
            print(f"{n:3d} slow clients: /healthz {_slowest_healthz(port)}", flush=True)
            slow.close()
        print(f"nobody slow, wrk 16 connections: {_wrk(port, opts.duration)}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
