"""Printing for commands: Rich tables for people, tab-separated lines for pipes, --json for
programs (the contract's Output rule, the convention of `gh` and `kubectl`).

Every value printed passes through `clean`: names and addresses come from a web form, and a
name holding an escape sequence would otherwise drive the operator's terminal (retitle it,
hide lines, fake a prompt). JSON needs no cleaning: json.dumps escapes every control character.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False)

_ISO_UTC = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?\+00:00$")
# ESC-introduced sequences (CSI "ESC [ ... final", OSC "ESC ] ... BEL|ST", two-byte ESC x)
# and their one-character C1 forms: removed whole, so no stray "[31m" is left behind.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# Unicode bidirectional controls reorder what the terminal shows (a name could appear to
# be an address, or hide its end); they are Cf, not Cc, so they are listed.
_BIDI = dict.fromkeys(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C], None
)


def clean(value: Any, *, keep_newlines: bool = False) -> str:
    """A value safe to print on a terminal: escape sequences and control characters gone,
    tabs and line breaks turned into spaces (unless keep_newlines, for message bodies)."""
    text = _ESCAPES.sub("", str(value)).translate(_BIDI)
    out = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch in "\t\r\n\v\f":
            out.append(" ")
        elif unicodedata.category(ch) != "Cc":
            out.append(ch)
    return "".join(out)


# Tables even into a pipe (`NURTURE_FORCE_TTY=1 nurture stats | less`), as GH_FORCE_TTY does.
FORCE_TTY_ENV = "NURTURE_FORCE_TTY"


def is_terminal() -> bool:
    """Whether standard output is a person's terminal (tables) or a pipe or file (TSV)."""
    if os.environ.get(FORCE_TTY_ENV, "").lower() in ("1", "true", "yes"):
        return True
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def human(value: Any) -> str:
    """A cell for people: UTC instants to the minute ("2026-03-06 14:00Z"), None as blank."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.isoformat()
    return _ISO_UTC.sub(r"\1 \2Z", clean(value))


def machine(value: Any) -> str:
    """A TSV cell: the whole value (full ISO instants, nothing cut), on one line."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return clean(value)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")(f)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def say(text: str, *, err: bool = False) -> None:
    """A line of prose that carries data (a name, a slug, an error): cleaned, then echoed."""
    click.echo(clean(text, keep_newlines=True), err=err)


def tsv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """One header line, then one line per row; tabs in values became spaces in `clean`."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(machine(row.get(c)) for c in columns) for row in rows]
    click.echo("\n".join(lines))


def table(rows: list[dict[str, Any]], columns: Sequence[str], title: str = "") -> Table:
    table = Table(title=escape(clean(title)) if title else None)
    for col in columns:
        table.add_column(col.replace("_", " "), overflow="fold")
    for row in rows:
        # Text, not markup: a name like "[b]" is data, never styling.
        table.add_row(*(Text(human(row.get(c))) for c in columns))
    return table


def emit(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str = ""
) -> None:
    """A listing: JSON when asked, a table on a terminal, TSV in a pipe."""
    rows = list(rows)
    if as_json:
        print_json(rows)
    elif not is_terminal():
        tsv(rows, columns)
    elif not rows:
        console.print(Text(f"no {clean(title) or 'rows'}", style="dim"))
    else:
        console.print(table(rows, columns, title))
