"""What `nurture run` and `nurture web` say at start: a port already taken is one line and
exit 1 (not "nurture is running" and five gunicorn tracebacks), and a NURTURE_BASE_URL that
names this machine on another port is pointed out, since every link would go nowhere."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nurture.config import base_url_elsewhere, listening_url
from tests.conftest import ROOT
from tests.support import free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.mark.parametrize("command", ["run", "web"])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "nurture.cli", command, "--port", str(port)],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert ran.returncode == 1
    assert ran.stderr == (
        f"Error: port {port} on 127.0.0.1 is already in use (is nurture already running?): "
        "stop it, or choose another with --port\n"
    )
    assert "nurture is running" not in ran.stdout


def test_web_says_when_the_base_url_names_another_port(tmp_path: Path) -> None:
    port = free_port()
    upgrade = [sys.executable, "-m", "nurture.cli", "db", "upgrade"]
    subprocess.run(upgrade, cwd=tmp_path, env=_env(), check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "web", "--port", str(port)],
        cwd=tmp_path, env=_env(NURTURE_BASE_URL="http://localhost:8000"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]  # the data key's warning first
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    said = [line for line in lines if line.startswith("warning: NURTURE_BASE_URL")]
    assert said, lines
    assert said[0].startswith(
        f"warning: NURTURE_BASE_URL is http://localhost:8000, but nurture listens on "
        f"127.0.0.1:{port}: links in emails will point where nothing listens"
    )


@pytest.mark.parametrize(
    ("base_url", "host", "port", "elsewhere"),
    [
        ("http://localhost:8000", "127.0.0.1", 8000, False),
        ("http://localhost:8000", "127.0.0.1", 19000, True),
        ("http://127.0.0.1:19000", "0.0.0.0", 19000, False),
        ("http://localhost", "127.0.0.1", 80, False),
        ("http://localhost:8000", "192.0.2.10", 8000, True),  # localhost does not reach it
        ("http://192.0.2.10:9000", "192.0.2.10", 8000, True),
        ("https://example.org", "127.0.0.1", 8000, False),  # a proxy's own port
        ("https://example.org:8443", "0.0.0.0", 8000, False),
    ],
)
def test_which_base_urls_point_elsewhere(
    base_url: str, host: str, port: int, elsewhere: bool
) -> None:
    assert base_url_elsewhere(base_url, host, port) is elsewhere


def test_links_follow_the_listening_address() -> None:
    assert listening_url("127.0.0.1", 19000) == "http://localhost:19000"
    assert listening_url("0.0.0.0", 80) == "http://localhost:80"
    assert listening_url("192.0.2.10", 8000) == "http://192.0.2.10:8000"
    assert listening_url("2001:db8::1", 8000) == "http://[2001:db8::1]:8000"
