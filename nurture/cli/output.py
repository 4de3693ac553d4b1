"""Printing for commands: Rich tables for people, --json for programs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console()

_ISO_UTC = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(:\d\d(\.\d+)?)?\+00:00$")


def human(value: Any) -> str:
    """A cell for people: UTC instants to the minute ("2026-03-06 14:00Z"), None as blank."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.isoformat()
    return _ISO_UTC.sub(r"\1 \2Z", str(value))


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")(f)


def emit(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str = ""
) -> None:
    rows = list(rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print(f"[dim]no {title or 'rows'}[/dim]")
        return
    table = Table(title=escape(title) if title else None)
    for col in columns:
        table.add_column(col.replace("_", " "), overflow="fold")
    for row in rows:
        # Text, not markup: a name like "[b]" is data, never styling.
        table.add_row(*(Text(human(row.get(c))) for c in columns))
    console.print(table)
