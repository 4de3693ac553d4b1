"""`nurture run` on the embedded defaults (SQLite database and broker, ./outbox): what the
README's first command starts. A subscriber added from the command line gets the first step
as a file, delivered by the real worker and beat processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support import free_port, wait_until

pytestmark = pytest.mark.slow


def _nurture(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nurture.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_embedded_run_delivers_the_first_step_to_outbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["NURTURE_DISPATCH_INTERVAL"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    upgraded = _nurture("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0
    applied = _nurture("sequences", "apply", "templates/sequences", cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    # Neither signs anything: the development-key warning is for `run`, said once there.
    assert "NURTURE_SECRET_KEY" not in upgraded.stderr + applied.stderr
    port = free_port()
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "run", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=60), (tmp_path / "run.log").read_text()
        added = _nurture(
            "subscribers", "add", "you@example.com", "--sequence", "partner-refuses-therapy",
            "--confirmed", cwd=tmp_path, env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        outbox = tmp_path / "outbox"
        arrived = wait_until(lambda: any(outbox.glob("*.welcome.*.eml")), timeout=60)
        assert arrived, (tmp_path / "run.log").read_text()[-3000:]
        _sign_up_through_the_page(port)
        confirmation = wait_until(lambda: any(outbox.glob("*.confirm-*.eml")), timeout=60)
        assert confirmation, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert len(list(outbox.glob("*.eml"))) == 2  # the welcome and the reader's confirmation
    log_bytes = (tmp_path / "run.log").read_bytes()
    # No NURTURE_BASE_URL in development: links go where `run --port` listens, not to :8000.
    here = f"http://localhost:{port}"
    assert f"signup form: {here}/subscribe/partner-refuses-therapy" in log_bytes.decode()
    for eml in outbox.glob("*.eml"):
        message = eml.read_text()
        assert f"{here}/unsubscribe/" in message or f"{here}/confirm/" in message, eml.name
        assert "localhost:8000" not in message, eml.name
    assert b"you@example.com" not in log_bytes  # no PII in logs
    # A dispatch pass every second, and not one line of it at info level.
    assert b"Task nurture.dispatch" not in log_bytes and b"due task dispatch" not in log_bytes
    assert b"reader@example.com" not in log_bytes
    # Web, worker and beat inherit that it was said: once for the whole run, not five times.
    assert log_bytes.count(b"NURTURE_SECRET_KEY is not set") == 1, log_bytes.decode()[-3000:]
    # The embedded broker keeps every delivered message: no address may be among them.
    for broker_file in tmp_path.glob("nurture-broker.db*"):
        assert b"reader@example.com" not in broker_file.read_bytes()


def _sign_up_through_the_page(port: int) -> None:
    base = f"http://127.0.0.1:{port}/subscribe/partner-refuses-therapy"
    with urllib.request.urlopen(base, timeout=10) as r:
        page = r.read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    data = urllib.parse.urlencode({"email": "reader@example.com", "csrf_token": token.group(1)})
    with urllib.request.urlopen(base, data=data.encode(), timeout=10) as r:
        assert r.status == 200
