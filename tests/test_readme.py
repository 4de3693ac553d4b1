"""The README's commands exist and do what it says: every `nurture` line of its shell blocks
runs, in order, against a scratch database, and every setting it names is a real one."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from nurture.config import Settings
from tests.cli_helpers import run
from tests.conftest import ROOT, reload_runtime

README = (ROOT / "README.md").read_text(encoding="utf-8")
# `demo` has its own test (it takes a while); the rest run here.
SKIP = {"demo"}


def _commands() -> list[list[str]]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith((".venv/bin/nurture ", "nurture ")):
                lines.append(shlex.split(line)[1:])
            elif line.startswith("export NURTURE_"):
                lines.append(shlex.split(line))  # a setting the commands after it use
    return lines


def test_the_readme_opens_with_the_two_commands() -> None:
    first = re.search(r"```sh\n(.*?)```", README, flags=re.S)
    assert first is not None
    assert [ln.split()[:2] for ln in first.group(1).splitlines()] == [
        ["make", "run"],
        ["make", "test"],
    ]
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun: " in makefile and "\ntest: " in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_in_the_readme_exists() -> None:
    named = set(re.findall(r"NURTURE_[A-Z_]+", README))
    known = {f"NURTURE_{name.upper()}" for name in Settings.model_fields}
    assert named - known == set()


def test_every_command_in_the_readme_runs(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox: list
) -> None:
    monkeypatch.chdir(ROOT)  # paths in the README are relative to the repository
    (tmp_path / "readers.csv").write_text(
        "email,first_name,timezone\nreader@example.com,Robin,Europe/Dublin\n"
    )
    # What `make run` does before it starts the services.
    assert run("db", "upgrade").code == 0
    assert run("sequences", "apply", "templates/sequences", "--if-empty").code == 0
    commands = _commands()
    assert len(commands) >= 10
    for args in commands:
        if args[0] in SKIP:
            continue
        if args[0] == "export":
            name, value = args[1].split("=", 1)
            monkeypatch.setenv(name, value)
            reload_runtime()
            continue
        args = [str(tmp_path / a) if a == "readers.csv" else a for a in args]
        expanded = [p for a in args for p in (sorted(glob.glob(a)) if "*" in a else [a])]
        result = run(*expanded)
        assert result.code == 0, (args, result.out, result.err)
        if args[:2] == ["subscribers", "add"]:
            # The running worker's part: one dispatch pass sends the first step.
            assert run("dispatch").code == 0
            assert [m["To"] for m in outbox] == ["you@example.com"]
