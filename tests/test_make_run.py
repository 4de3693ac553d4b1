"""`make run` as the README's first command: runtime dependencies only, a port of your
choice, no packaging warnings, and nothing it leaves behind shows up in `git status`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import ROOT


def _make_n(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        ["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_make_run_installs_runtime_only_and_takes_a_port() -> None:
    out = _make_n("run", "PORT=8123", "VENV=/tmp/nurture-make-n-venv")
    installs = [line for line in out.splitlines() if "pip install" in line and " -e " in line]
    assert installs and all("[test]" not in line for line in installs), out
    assert "nurture run --host 127.0.0.1 --port 8123" in out
    assert "nurture db upgrade" in out
    # A restart never publishes edits half made: the default sequence goes in on a first start.
    assert "nurture sequences apply templates/sequences --if-empty" in out
    assert "test -f .env || test -f nurture.db || /tmp/nurture-make-n-venv/bin/nurture init" in out


def test_make_test_still_installs_the_test_tools() -> None:
    assert "pip install -q -e '.[test]'" in _make_n("setup", "VENV=/tmp/nurture-make-n-venv")


def test_the_license_is_an_spdx_string_for_a_setuptools_that_reads_it() -> None:
    # A TOML table here makes setuptools warn three times on every install.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert "setuptools>=77" in project["build-system"]["requires"]


@pytest.mark.parametrize(
    "name",
    [
        "celerybeat-schedule",
        "celerybeat-schedule.db",
        "celerybeat-schedule.dat",
        "nurture.db-wal",
        "nurture.db-shm",
        "nurture-broker.db-wal",
        ".env",
        "nurture-backup.db",
        "backups/nurture-2026-01-31.db",
    ],
)
def test_what_make_run_leaves_is_ignored(name: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ran = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
    assert ran.returncode == 0, f"{name} is not ignored"


def test_every_backup_the_guide_writes_is_ignored() -> None:
    # A backup holds everyone's data: the one-liners must write where git never looks.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    guide = (ROOT / "docs" / "operations.md").read_text()
    targets = re.findall(r"backup\(sqlite3\.connect\(f?'([^']+)'\)\)", guide)
    assert len(targets) >= 2, targets
    for target in targets:
        example = target.replace("{datetime.date.today()}", "2026-01-31")
        ran = subprocess.run(["git", "check-ignore", "-q", example], cwd=ROOT)
        assert ran.returncode == 0, f"{example} is not ignored"
