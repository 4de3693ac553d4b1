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
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nurture.clock import practice_zone

console = Console(highlight=False)

# An ISO instant with its offset, as the services hand times to commands.
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)$")
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


def zone_name(zone: tzinfo | None = None, at: datetime | None = None) -> str:
    """The practice's zone as people know it: its IANA name, else its abbreviation (then)."""
    zone = zone or practice_zone()
    return (
        getattr(zone, "key", None) or (at or datetime.now(UTC)).astimezone(zone).tzname() or "UTC"
    )


# How times are shown: to the minute, the same with its weekday (a time in a sentence:
# "Fri 2026-03-06 09:00"), or the day (of a schedule).
MINUTE = "minute"
WEEKDAY = "weekday"
DAY = "day"


def when(
    value: datetime | str | None,
    style: str = MINUTE,
    *,
    zone: tzinfo | None = None,
    named: bool = False,
) -> str:
    """The one way a time is shown to people: in the practice's zone (NURTURE_TIMEZONE),
    "2026-12-04 10:00" (MINUTE), "Fri 2026-12-04 10:00" (WEEKDAY) or "Fri 4 Dec" (DAY);
    `named` adds the zone, for a time in a sentence (a table names it once, in its caption)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    zone = zone or practice_zone()
    local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    formats = {DAY: f"{local:%a} {local.day} {local:%b}", WEEKDAY: f"{local:%a %Y-%m-%d %H:%M}"}
    text = formats.get(style, f"{local:%Y-%m-%d %H:%M}")
    return f"{text} {zone_name(zone)}" if named else text


def human(value: Any) -> str:
    """A cell for people: instants in the practice's zone, to the minute; None as blank."""
    if value is None:
        return ""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO.match(value)):
        return when(value)
    return clean(value)


def is_time(value: Any) -> bool:
    return isinstance(value, datetime) or (isinstance(value, str) and bool(_ISO.match(value)))


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


# A column of long words (addresses, slugs, step keys) may be shortened to this many cells,
# ending in "…", before a table gives up and stacks; a word is never split across lines.
SHORTEST = 12


@dataclass(frozen=True)
class Cell:
    """A table cell: its words, kept whole (a line breaks only between them), and its style."""

    words: tuple[str, ...]
    style: str = ""

    @classmethod
    def of(cls, value: Any, style: str = "", *, sep: str = " ") -> Cell:
        text = human(value)
        return cls(tuple(w for w in text.split(sep) if w) if text else (), style)

    @property
    def natural(self) -> int:
        return cell_len(" ".join(self.words))

    @property
    def longest(self) -> int:
        return max((cell_len(w) for w in self.words), default=0)


def _shorten(word: str, width: int) -> str:
    if cell_len(word) <= width:
        return word
    cut = word
    while cut and cell_len(cut) > width - 1:
        cut = cut[:-1]
    return cut + "…"


def _wrap(words: Sequence[str], width: int) -> str:
    """Words into lines of at most `width` cells, breaking only between words."""
    lines: list[str] = []
    for word in (_shorten(w, width) for w in words):
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _widths(headers: Sequence[str], rows: Sequence[Sequence[Cell]], room: int) -> list[int] | None:
    """Each column's width so the table fits `room` cells without splitting a word (long
    words shortened to SHORTEST at most), or None when even that is too wide."""
    head = [Cell.of(h) for h in headers]
    natural = [max([head[i].natural, *(r[i].natural for r in rows)]) for i in range(len(head))]
    longest = [max([head[i].longest, *(r[i].longest for r in rows)]) for i in range(len(head))]
    least = [max(head[i].longest, min(longest[i], SHORTEST), 1) for i in range(len(head))]
    room -= 3 * len(headers) + 1  # borders and a space either side of each cell
    if sum(natural) <= room:
        return natural
    if sum(least) > room:
        return None
    widths, spare = list(least), room - sum(least)
    # First every word whole, then every cell on one line; each time to the columns that
    # need least first, so the fewest cells are shortened or wrapped.
    for goal in (longest, natural):
        for i in sorted(range(len(widths)), key=lambda i: goal[i] - widths[i]):
            more = max(0, min(goal[i] - widths[i], spare))
            widths[i] += more
            spare -= more
    return widths


def fitted(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str = "",
    caption: str | None = None,
    right: Iterable[int] = (),
    width: int | None = None,
) -> RenderableType:
    """A table that fits the terminal: columns narrowed by wrapping between words, then by
    shortening long words with "…"; when even that does not fit, each row stacked as
    "header  value" lines. Never a word split across lines (`confirme│d`)."""
    width = width or console.width
    right = set(right)
    title_text = escape(clean(title)) if title else None
    widths = _widths(headers, rows, width)
    if widths is None:
        return _stacked(headers, rows, title_text, caption, width)
    table = Table(title=title_text, caption=caption, title_justify="left", caption_justify="left")
    for i, (header, w) in enumerate(zip(headers, widths, strict=True)):
        justify: JustifyMethod = "right" if i in right else "left"
        table.add_column(_wrap(header.split(), w), width=w, justify=justify, overflow="ellipsis")
    for row in rows:
        # Text, not markup: a name like "[b]" is data, never styling.
        cells = zip(row, widths, strict=True)
        table.add_row(*(Text(_wrap(c.words, w), style=c.style) for c, w in cells))
    return table


def _stacked(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    title: str | None,
    caption: str | None,
    width: int,
) -> RenderableType:
    label = max(cell_len(h) for h in headers)
    room = max(width - label - 2, SHORTEST)
    parts: list[RenderableType] = [Text.from_markup(title, style="italic")] if title else []
    for row in rows:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=label, style="dim")
        grid.add_column(width=room, overflow="ellipsis")
        for header, c in zip(headers, row, strict=True):
            if c.words:
                grid.add_row(header, Text(_wrap(c.words, room), style=c.style))
        parts += [Text(""), grid] if parts else [grid]
    if caption:
        parts.append(Text(caption, style="dim"))
    return Group(*parts)


def table(rows: list[dict[str, Any]], columns: Sequence[str], title: str = "") -> RenderableType:
    """Rows of a listing as a fitted table. Columns empty in every row are left out (a pipe
    and --json keep them all); times are in the practice's zone, named in the caption."""
    shown = [c for c in columns if any(row.get(c) not in (None, "") for row in rows)] or list(
        columns
    )
    times = any(is_time(row.get(c)) for row in rows for c in shown)
    cells = [[Cell.of(row.get(c)) for c in shown] for row in rows]
    right = [i for i, c in enumerate(shown) if all(isinstance(r.get(c), int) for r in rows)]
    return fitted(
        [c.replace("_", " ") for c in shown],
        cells,
        title=title,
        caption=f"times in {zone_name()}" if times else None,
        right=right,
    )


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
