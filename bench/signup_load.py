"""Load on the signup page: gunicorn on loopback, `wrk` against GET and POST /subscribe/<slug>.

    python -m bench.signup_load [--duration 10] [--connections 16] [--workers 4] [--postgres URL]

Everything runs on 127.0.0.1 against a throw-away SQLite database (or, with --postgres, a
throw-away database on that server), with the rate limit switched off (NURTURE_RATE_LIMIT)
and mail and broker in memory. Each run is bounded by --duration; gunicorn is stopped at the
end whatever happens. Prints requests/s and p99 latency for each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

SLUG = "bench"
SEQUENCE = """\
slug: bench
name: Benchmark sequence
from: {name: Bench Practice, email: hello@example.org}
consult: {url: "https://example.org/book", text: Book a free consult}
postal_address: 1 Example Street, Columbia, MD 21044
timezone: America/New_York
steps:
  - {key: one, delay: "0", subject: "Step one", body: one.md}
"""
POST_LUA = """\
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  token = args[1]
  n = 0
end
function request()
  n = n + 1
  local body = "email=bench-" .. tid .. "-" .. n .. "%40example.com&first_name=Bench"
    .. "&timezone=Europe%2FParis&website=&csrf_token=" .. token
  return wrk.format("POST", "/subscribe/bench",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def _seconds(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def _wrk(args: list[str], timeout: float) -> dict[str, float]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if not rps or not p99:
        raise SystemExit(f"could not read wrk output:\n{text}\n{out.stderr}")
    return {
        "rps": float(rps.group(1)),
        "p99_ms": _seconds(p99.group(1)) * 1000,
        "requests": float(total.group(1)) if total else float("nan"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
    }


def _postgres_db(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nurture_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=max(2, min(8, os.cpu_count() or 2)))
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="use a temp PostgreSQL database")
    opts = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    duration = max(1, min(opts.duration, 120))

    tmp = Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    pg_name = None
    if opts.postgres:
        db_url, pg_name = _postgres_db(opts.postgres)
    else:
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env.update(
        NURTURE_DATABASE_URL=db_url,
        NURTURE_BROKER_URL="memory://",
        NURTURE_MAIL_URL="memory://",
        NURTURE_SECRET_KEY="bench-secret-key-0123456789abcdef",
        NURTURE_BASE_URL=f"http://127.0.0.1:{port}",
        NURTURE_RATE_LIMIT="false",
        NURTURE_ENV="production",
    )
    folder = tmp / "sequences" / SLUG
    folder.mkdir(parents=True)
    (folder / "sequence.yaml").write_text(SEQUENCE)
    (folder / "one.md").write_text("Hello {{ subscriber.first_name or 'there' }}.\n")
    py = sys.executable
    _run(
        [
            py,
            "-c",
            "import sys; from pathlib import Path\n"
            "from nurture.migrations import upgrade\n"
            "from nurture.sequences.editing import apply_spec\n"
            "from nurture.sequences.spec import load_folder\n"
            "from bench.support import runtime_from_env\n"
            "rt = runtime_from_env()\n"
            "upgrade(rt.settings.database_url)\n"
            "with rt.transaction() as s: apply_spec(s, load_folder(Path(sys.argv[1])))\n",
            str(folder),
        ],
        env,
        120,
    )
    server = subprocess.Popen(
        [
            py,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(opts.workers),
            "--log-level",
            "warning",
            "nurture.web.app:create_app()",
        ],
        env=env,
        cwd=tmp,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/subscribe/{SLUG}", timeout=2) as r:
                    page = r.read().decode()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("gunicorn did not come up") from None
                time.sleep(0.2)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, "the signup page has a csrf_token"
        common = [
            "wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{duration}s", "--latency",
        ]  # fmt: skip
        where = "PostgreSQL" if opts.postgres else "SQLite"
        print(
            f"gunicorn {opts.workers} workers on {base}, {where}; "
            f"wrk {opts.threads} threads, {opts.connections} connections, {duration}s each"
        )
        get = _wrk([*common, f"{base}/subscribe/{SLUG}"], duration + 60)
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
        post = _wrk(
            [*common, "-s", str(script), f"{base}/subscribe/{SLUG}", "--", token.group(1)],
            duration + 60,
        )
        for name, r in (("GET  /subscribe/bench", get), ("POST /subscribe/bench", post)):
            print(
                f"{name}: {r['rps']:.0f} requests/s, p99 {r['p99_ms']:.1f} ms "
                f"({r['requests']:.0f} requests, {r['non_2xx']:.0f} non-2xx)"
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
        if pg_name and opts.postgres:
            _drop_postgres(opts.postgres, pg_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
