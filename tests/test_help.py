"""`--help` at 80 columns: command lists give each command's first sentence whole (never cut
with "..."), and examples are never broken inside a name (`partner-` / `refuses-therapy`):
a long one continues after a backslash, so it can still be copied as one command."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from nurture.cli import cli


def _paths(group: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in sorted(getattr(group, "commands", {}).items()):
        found += _paths(sub, (*prefix, name))
    return found


PATHS = _paths(cli)


def _help(path: tuple[str, ...]) -> str:
    ran = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80, prog_name="nurture")
    assert ran.exit_code == 0, ran.output
    return ran.output


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "nurture" for p in PATHS])
def test_help_fits_80_columns_and_cuts_nothing(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    commands = text.split("Commands:\n", 1)[1] if "Commands:\n" in text else ""
    assert "..." not in commands and "\u2026" not in commands, text
    # The example, put back together, is the example the docstring gives.
    shown = re.search(r"^  (Example: (?:.* \\\n)*.*)$", text, re.M)
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    written = re.search(r"Example: .*", " ".join((cmd.help or "").split()).replace(" \\ ", " "))
    if written:
        assert shown, text
        assert " ".join(shown.group(1).replace(" \\\n", " ").split()) == written.group(0)


def test_a_long_example_continues_after_a_backslash() -> None:
    text = _help(("subscribers",))
    assert "  Example: nurture subscribers list --sequence partner-refuses-therapy \\\n" in text
    assert "refuses-\n" not in text


def test_an_optional_argument_is_shown_optional() -> None:
    # `deliveries retry --all-failed` needs no ID: the usage line must not ask for one.
    assert "Usage: nurture deliveries retry [OPTIONS] [ID]\n" in _help(("deliveries", "retry"))
