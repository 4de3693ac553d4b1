"""Importing subscribers from a CSV file (columns `email`, optional `first_name`, `timezone`).

Two streaming passes keep memory flat however long the file is: the first checks every
row and counts them, so a bad row refuses the whole file before anything is written. The
second writes in chunks of CHUNK rows, each its own short transaction: a long import never
keeps a signup or a send waiting for more than a moment (on SQLite there is one writer at a
time). An import stopped midway (a crash, Ctrl-C) is completed by running it again: the
rows already written are recognised ("already enrolled") and nothing is sent twice. Rows are
reported by line number only.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.db import reading, transaction
from nurture.errors import NurtureError
from nurture.events.models import Event, EventKind
from nurture.events.outbox import queue_many
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import first_due, is_valid_timezone
from nurture.sequences.services import get_sequence, live_steps
from nurture.subscribers.addresses import email_index, normalize_email, person_columns
from nurture.subscribers.cleaning import clean, clean_name
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from nurture.subscribers.operator import Outcome, add_by_operator
from nurture.subscribers.rules import FORGOTTEN
from nurture.subscribers.suppression import left_elsewhere, suppression_keys

COLUMNS = ("email", "first_name", "timezone")
IMPORT_CONSENT = "Imported by the operator, who holds this person's consent."
IMPORT_CONSENT_VERSION = "import-1"
# Rows per transaction: a few hundred milliseconds of writing at most, also when every row
# is someone already known (checked one by one, for the consent rules).
CHUNK = 200
MAX_REPORTED = 20  # bad rows listed one by one; the rest are counted

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    first_name: str | None
    timezone: str | None


@dataclass
class CheckResult:
    rows: int = 0
    valid: int = 0
    bad: int = 0
    errors: list[str] = field(default_factory=list)  # "line 7: ..." (first MAX_REPORTED)

    def note(self, line: int, problem: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(f"line {line}: {problem}")


@dataclass
class ImportResult:
    check: CheckResult
    added: int = 0  # new subscribers
    updated: int = 0  # known addresses newly enrolled (or confirmed)
    already: int = 0  # known addresses already enrolled: nothing changed
    # People who left or were forgotten, by reason: never put back by an import.
    refused: dict[str, int] = field(default_factory=dict)
    repeated: int = 0  # an address on several rows: its last row counts

    @property
    def suppressed(self) -> int:
        return self.refused.get(FORGOTTEN, 0)


NOT_UTF8 = 'not UTF-8 text (in a spreadsheet, save the file as "CSV UTF-8")'
FIELD_LIMIT_ERROR = "field larger than field limit"  # csv.Error's words for it


class _Lines:
    """The file's lines, as text, for csv.reader, keeping what the reader cannot tell: the
    real line number (csv's line_num stops short when a line fails to decode, and counts
    nothing we skip ourselves), the lines of the row being read, whether one of them was
    not UTF-8, and bytes read for the progress bar."""

    def __init__(self, f: IO[bytes], progress: Progress | None) -> None:
        self.f = f
        self.progress = progress
        self.line = 0
        self.row: list[str] = []
        self.not_utf8 = False

    def next_row(self) -> int:
        """Forget the last row; returns the line the next one starts on."""
        self.row, self.not_utf8 = [], False
        return self.line + 1

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self.f)
        self.line += 1
        if self.progress:
            self.progress(len(raw))
        codec = "utf-8-sig" if self.line == 1 else "utf-8"
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            # Decoded anyway, so the reader keeps its place: an exception here would end
            # the reading of the file, silently, at this line. The row is refused instead.
            text, self.not_utf8 = raw.decode(codec, "replace"), True
        self.row.append(text)
        return text


def _inside_quotes(text: str, dialect: Any, inside: bool = False) -> bool:
    """Whether csv's reader would still be inside a quoted field at the end of `text`
    (the rules of _csv.c, not strict: a quote opens a field only where the field starts,
    and a doubled quote inside one is a quote)."""
    quote, delimiter = dialect.quotechar, dialect.delimiter
    start, closed = not inside, False
    for ch in text:
        if inside:
            inside, closed = ch != quote, ch == quote
        elif closed and ch == quote:
            inside, closed = True, False
        else:
            inside, closed = start and ch == quote, False
            start = ch in (delimiter, "\r", "\n")
    return inside


def _unreadable(exc: csv.Error, reader: Any, lines: _Lines) -> str:
    if FIELD_LIMIT_ERROR not in str(exc):
        return f"unreadable row ({exc})"
    # The reader gave up inside the long field and starts again at the next line. When that
    # line is still inside the field's quotes, what follows is the field, not rows: skip to
    # the line its quotes close on.
    inside = _inside_quotes("".join(lines.row), reader.dialect)
    while inside:
        try:
            inside = _inside_quotes(next(lines), reader.dialect, inside=True)
        except StopIteration:
            break
    return f"a field is longer than {csv.field_size_limit()} characters"


def _header(path: Path, reader: Any, lines: _Lines) -> dict[str, int]:
    lines.next_row()
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise NurtureError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise NurtureError(f"{path}:1: unreadable header ({exc})") from None
    if lines.not_utf8:
        raise NurtureError(f"{path}:1: {NOT_UTF8}")
    if "email" not in header:
        raise NurtureError(f"{path}:1: no 'email' column (columns: {', '.join(COLUMNS)})")
    return {name: header.index(name) for name in COLUMNS if name in header}


def _rows(path: Path, progress: Progress | None = None) -> Iterator[tuple[int, Row | str]]:
    """(line, Row) for a good row, (line, problem) for a bad one; a row's line is the one
    it starts on, as an editor shows it."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise NurtureError(f"{path}: {exc.strerror}") from None
    with f:
        lines = _Lines(f, progress)
        reader = csv.reader(lines)
        index = _header(path, reader, lines)
        while True:
            line = lines.next_row()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, _unreadable(exc, reader, lines)
                continue
            if lines.not_utf8:
                yield line, NOT_UTF8
            elif any(c.strip() for c in cells):  # else a blank line
                yield line, _check_row(line, cells, index)


def _check_row(line: int, cells: list[str], index: dict[str, int]) -> Row | str:
    def cell(name: str) -> str:
        i = index.get(name)
        return clean(cells[i]).strip() if i is not None and i < len(cells) else ""

    try:
        email = normalize_email(cell("email"))
    except NurtureError as exc:
        return str(exc)
    tz = cell("timezone") or None
    if tz is not None and not is_valid_timezone(tz):
        return f"unknown time zone {tz!r}"
    name = clean_name(cell("first_name"))
    return Row(line, email, name, tz)


def check_csv(path: Path, progress: Progress | None = None) -> CheckResult:
    """The first pass: every row checked, nothing written. `progress` gets bytes read."""
    result = CheckResult()
    for line, row in _rows(path, progress):
        result.rows += 1
        if isinstance(row, str):
            result.note(line, row)
        else:
            result.valid += 1
    return result


def import_csv(
    path: Path,
    slug: str,
    *,
    confirmed: bool = False,
    skip_invalid: bool = False,
    check_progress: Progress | None = None,
    import_progress: Progress | None = None,
    checked: CheckResult | None = None,
) -> ImportResult:
    """Check the whole file, then import it a chunk per transaction. Without skip_invalid a
    single bad row refuses the file; with it, bad rows are left out and reported."""
    check = checked or check_csv(path, check_progress)
    if check.bad and not skip_invalid:
        more = (
            f" (and {check.bad - len(check.errors)} more)" if check.bad > len(check.errors) else ""
        )
        raise ImportRefused(check, f"{check.bad} bad row(s), nothing imported{more}")
    result = ImportResult(check=check)
    with reading() as s:
        seq_id = get_sequence(s, slug).id
    for chunk in _chunks(row for _, row in _rows(path) if not isinstance(row, str)):
        with transaction() as s:
            _import_chunk(s, seq_id, chunk, confirmed, result, import_progress)
    return result


def _chunks(rows: Iterator[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ImportRefused(NurtureError):
    def __init__(self, check: CheckResult, message: str) -> None:
        super().__init__(message)
        self.check = check


def _import_chunk(
    s: Session,
    seq_id: int,
    rows: list[Row],
    confirmed: bool,
    result: ImportResult,
    progress: Progress | None,
) -> None:
    seq = s.get_one(Sequence, seq_id)
    latest = {r.email: r for r in rows}  # a repeated address: its last row wins
    # Known, forgotten, or the same mailbox left under another spelling: the one-by-one
    # path keeps every consent rule for these (subscribers/operator.py).
    careful = _known(s, latest) | _suppressed(s, latest) | set(left_elsewhere(s, latest))
    fresh = [r for e, r in latest.items() if e not in careful]
    result.repeated += len(rows) - len(latest)
    for email, row in latest.items():
        if email in careful:
            _import_known(s, seq, row, confirmed, result)
    if fresh:
        _insert_new(s, seq, fresh, confirmed)
        result.added += len(fresh)
    s.flush()
    if progress:
        progress(len(rows))


def _known(s: Session, addresses: dict[str, Row]) -> set[str]:
    by_index = {email_index(e): e for e in addresses}
    q = select(Subscriber.email_index).where(Subscriber.email_index.in_(list(by_index)))
    return {by_index[i] for i in s.scalars(q)}


def _suppressed(s: Session, addresses: dict[str, Row]) -> set[str]:
    by_key = {k: e for e in addresses for k in suppression_keys(e)}
    q = select(Suppression.email_hash).where(Suppression.email_hash.in_(list(by_key)))
    return {by_key[k] for k in s.scalars(q)}


def _import_known(
    s: Session, seq: Sequence, row: Row, confirmed: bool, result: ImportResult
) -> None:
    added = add_by_operator(
        s,
        row.email,
        seq,
        first_name=row.first_name,
        timezone=row.timezone,
        confirmed=confirmed,
        source="import",
        consent_text=IMPORT_CONSENT,
        consent_version=IMPORT_CONSENT_VERSION,
    )
    if added.outcome == Outcome.SKIPPED:
        reason = added.reason or "skipped"
        result.refused[reason] = result.refused.get(reason, 0) + 1
    elif added.outcome == Outcome.ALREADY:
        result.already += 1
    else:
        result.updated += 1


def _insert_new(s: Session, seq: Sequence, rows: list[Row], confirmed: bool) -> None:
    """New addresses in bulk: what add_subscriber does for one, a chunk at a time."""
    t = now()
    ids = list(
        s.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
            [
                {
                    **person_columns(r.email, r.first_name),
                    "timezone": r.timezone,
                    "status": SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING,
                    "created_at": t,
                    "confirmed_at": t if confirmed else None,
                }
                for r in rows
            ],
        )
    )
    s.execute(
        insert(Consent),
        [
            {
                "subscriber_id": i,
                "sequence_id": seq.id,
                "source": "import",
                "consent_text": IMPORT_CONSENT,
                "consent_version": IMPORT_CONSENT_VERSION,
                "created_at": t,
                "confirmed_at": t if confirmed else None,
            }
            for i in ids
        ],
    )
    s.execute(insert(Enrollment), _new_enrollments(s, seq, ids, rows, confirmed, t))
    if confirmed:
        s.execute(
            insert(Event),
            [{"kind": EventKind.CONFIRMED, "subscriber_id": i, "created_at": t} for i in ids],
        )
        # Core inserts skip the session's flush hook: announce these in bulk too.
        queue_many(s, "confirmed", [(r.email, seq.slug) for r in rows])


def _new_enrollments(
    s: Session, seq: Sequence, ids: list[int], rows: list[Row], confirmed: bool, t: datetime
) -> list[dict[str, Any]]:
    """The enrollment rows of new subscribers: pending, or, when confirmed, started as
    start_enrollment starts one (completed at once when the sequence has no live step)."""
    steps = live_steps(s, seq.id) if confirmed else []
    due: dict[str | None, Any] = {}  # first due time per time zone, computed once each
    enrollments = []
    for i, r in zip(ids, rows, strict=True):
        values: dict[str, Any] = {
            "subscriber_id": i,
            "sequence_id": seq.id,
            "status": EnrollmentStatus.PENDING,
            "created_at": t,
            "source": "import",
        }
        if confirmed and steps:
            if r.timezone not in due:
                due[r.timezone] = first_due(seq, r.timezone, t, steps[0].delay_seconds)
            values |= {
                "status": EnrollmentStatus.ACTIVE,
                "started_at": t,
                "next_step_id": steps[0].id,
                "next_due_at": due[r.timezone],
            }
        elif confirmed:
            values |= {"status": EnrollmentStatus.COMPLETED, "started_at": t, "ended_at": t}
        enrollments.append(values)
    return enrollments
