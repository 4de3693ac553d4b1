"""Importing subscribers from a CSV file (columns `email`, optional `first_name`, `timezone`).

What a file looks like: the header names of other tools' exports are understood (ALIASES:
Mailchimp, Kit, Google Contacts, Outlook...), `--column email="E-mail 1"` names any other,
and the separator (`,`, `;` or tab; Excel's `sep=` first line too) is read from the header.

What an import does to people: someone new is added; someone known keeps the name we hold
(a row's other spelling is reported at its line, and taken only with update_names); people
who left are skipped with their reason (subscribers/operator.py). Imported people are not
waiting for a welcome: with --confirmed their first email keeps to their own window
(enrolling.first_send), and the result says when the first emails go. A dry run reads the
same rows, asks the same rules and writes nothing.

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
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nurture.clock import now
from nurture.db import reading, transaction
from nurture.delivery.models import Delivery
from nurture.errors import NurtureError
from nurture.events.models import Event, EventKind
from nurture.events.outbox import queue_many
from nurture.sequences.models import Sequence
from nurture.sequences.schedule import is_valid_timezone
from nurture.sequences.services import get_sequence, live_steps
from nurture.subscribers.addresses import (
    email_index,
    find_subscriber,
    normalize_email,
    person_columns,
    rename,
)
from nurture.subscribers.cleaning import clean, clean_name
from nurture.subscribers.enrolling import first_send
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from nurture.subscribers.operator import OperatorAdd, Outcome, add_by_operator, decide
from nurture.subscribers.rules import FORGOTTEN
from nurture.subscribers.suppression import left_elsewhere, suppression_keys

COLUMNS = ("email", "first_name", "timezone")
# The header names other tools export, compared without case, spaces or punctuation
# ("E-mail 1 - Value" is email1value). A full name ("Name") is not a first name: a greeting
# "Hi Alex Smith," is worse than none; --column first_name=Name says otherwise.
ALIASES: dict[str, frozenset[str]] = {
    # Mailchimp "Email Address", Kit "email_address", Google Contacts "E-mail 1 - Value",
    # Outlook "E-mail Address", Brevo "EMAIL", ...
    "email": frozenset({"email", "emailaddress", "email1value", "email1address", "mail"}),
    # Mailchimp and Outlook "First Name", Kit "first_name", Google "Given Name", Brevo
    # "FIRSTNAME" (and "PRENOM" in French), ...
    "first_name": frozenset({"firstname", "givenname", "first", "fname", "forename", "prenom"}),
    # Mailchimp "TIMEZONE", "Time Zone", "tz"
    "timezone": frozenset({"timezone", "tz"}),
}
SEPARATORS = (",", ";", "\t")
SHOWN_COLUMNS = 12  # the columns a "no email column" error names; the rest are counted
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
    dry_run: bool = False
    # What the operator is told line by line (the first MAX_REPORTED of each kind): people
    # skipped and why, names that differ from the one we hold.
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    name_lines: list[tuple[int, str]] = field(default_factory=list)
    names_differ: int = 0
    renamed: int = 0  # names taken from the file (update_names)
    # When the first emails go: a count per due time (UTC). Empty without --confirmed.
    first_sends: Counter[datetime] = field(default_factory=Counter)

    @property
    def suppressed(self) -> int:
        return self.refused.get(FORGOTTEN, 0)

    @property
    def skipped(self) -> int:
        return sum(self.refused.values())

    def refuse(self, line: int, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if len(self.skipped_lines) < MAX_REPORTED:
            self.skipped_lines.append((line, f"line {line}: skipped: {reason}"))

    def name_differs(self, line: int, held: str, given: str, update: bool) -> None:
        self.names_differ += 1
        self.renamed += update
        if len(self.name_lines) >= MAX_REPORTED:
            return
        if update:
            change = "would change" if self.dry_run else "changed"
            note = f'name {change} from "{held}" to "{given}"'
        else:
            note = f'name "{held}" kept; this row says "{given}" (--update-names takes it)'
        self.name_lines.append((line, f"line {line}: {note}"))

    def lines(self) -> list[str]:
        """The rows worth a look, in the file's order."""
        return [text for _, text in sorted(self.skipped_lines + self.name_lines)]


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


def _key(header: str) -> str:
    return re.sub(r"[^0-9a-z]", "", header.casefold())


def _listed(headers: list[str]) -> str:
    shown = ", ".join(f'"{h}"' for h in headers[:SHOWN_COLUMNS])
    more = len(headers) - SHOWN_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "") if headers else "none"


def find_columns(
    where: str, header: list[str], chosen: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Which column holds each field: the one `chosen` names (--column FIELD=HEADER), else
    the one whose header is the field's or one of its ALIASES. Raises NurtureError naming
    the file's own columns when there is no email column, or two could be one field."""
    names = [h.strip() for h in header]
    index: dict[str, int] = {}
    for name in COLUMNS:
        wanted = (chosen or {}).get(name)
        if wanted is not None:
            hits = [i for i, h in enumerate(names) if h.casefold() == wanted.strip().casefold()]
            if not hits:
                raise NurtureError(
                    f'{where}: no column "{wanted}" (--column {name}); '
                    f"the file's columns: {_listed(names)}"
                )
        else:
            hits = [i for i, h in enumerate(names) if _key(h) in ALIASES[name]]
        if len(hits) > 1:
            both = " and ".join(f'"{names[i]}"' for i in hits[:2])
            raise NurtureError(
                f"{where}: {both} could both be the {name} column; "
                f'choose one with --column {name}="..."'
            )
        if hits:
            index[name] = hits[0]
    if "email" not in index:
        raise NurtureError(
            f"{where}: no column of email addresses; the file's columns: {_listed(names)}. "
            'Name the one that holds them: --column email="..."'
        )
    return index


def _header(
    path: Path, reader: Any, lines: _Lines, chosen: Mapping[str, str] | None
) -> dict[str, int]:
    start = lines.next_row()
    try:
        header = next(reader)
    except StopIteration:
        raise NurtureError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise NurtureError(f"{path}:{start}: unreadable header ({exc})") from None
    if lines.not_utf8:
        raise NurtureError(f"{path}:{start}: {NOT_UTF8}")
    return find_columns(f"{path}:{start}", [clean(h) for h in header], chosen)


_SEP_LINE = re.compile(r"^sep=(.)\s*$")  # Excel's first line naming the separator


def separator(first_line: str) -> tuple[str, bool]:
    """The separator a file's first line shows, and whether that line is Excel's `sep=`
    (then the header is the next line). The one of `,` `;` tab that splits the header most
    (outside quotes) wins; a one-column header means `,`."""
    if m := _SEP_LINE.match(first_line.strip("\r\n")):
        return m.group(1), True
    counts = dict.fromkeys(SEPARATORS, 0)
    inside = False
    for ch in first_line:
        if ch == '"':
            inside = not inside
        elif not inside and ch in counts:
            counts[ch] += 1
    best = max(SEPARATORS, key=lambda sep: counts[sep])  # ties: the first, ","
    return (best if counts[best] else ","), False


def _rows(
    path: Path, progress: Progress | None = None, columns: Mapping[str, str] | None = None
) -> Iterator[tuple[int, Row | str]]:
    """(line, Row) for a good row, (line, problem) for a bad one; a row's line is the one
    it starts on, as an editor shows it."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise NurtureError(f"{path}: {exc.strerror}") from None
    with f:
        delimiter, sep_line = separator(f.readline().decode("utf-8-sig", "replace"))
        f.seek(0)
        lines = _Lines(f, progress)
        if sep_line:
            next(lines)
        reader = csv.reader(lines, delimiter=delimiter)
        index = _header(path, reader, lines, columns)
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


def check_csv(
    path: Path, progress: Progress | None = None, columns: Mapping[str, str] | None = None
) -> CheckResult:
    """The first pass: every row checked, nothing written. `progress` gets bytes read;
    `columns` names headers (--column FIELD=HEADER)."""
    result = CheckResult()
    for line, row in _rows(path, progress, columns):
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
    columns: Mapping[str, str] | None = None,
    update_names: bool = False,
    dry_run: bool = False,
) -> ImportResult:
    """Check the whole file, then import it a chunk per transaction. Without skip_invalid a
    single bad row refuses the file; with it, bad rows are left out and reported.
    dry_run: the same rows through the same rules, in read-only sessions: the result says
    what the import would do, and nothing is written."""
    check = checked or check_csv(path, check_progress, columns)
    if check.bad and not skip_invalid:
        more = (
            f" (and {check.bad - len(check.errors)} more)" if check.bad > len(check.errors) else ""
        )
        raise ImportRefused(check, f"{check.bad} bad row(s), nothing imported{more}")
    result = ImportResult(check=check, dry_run=dry_run)
    with reading() as s:
        seq_id = get_sequence(s, slug).id
    job = _Import(seq_id, confirmed, update_names, dry_run, result)
    for chunk in _chunks(row for _, row in _rows(path, None, columns) if not isinstance(row, str)):
        with reading() if dry_run else transaction() as s:
            job.chunk(s, chunk)
        if import_progress:
            import_progress(len(chunk))
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


@dataclass
class _Import:
    seq_id: int
    confirmed: bool
    update_names: bool
    dry_run: bool
    result: ImportResult
    # A dry run writes nothing, so a later chunk would take an address an earlier one
    # "added" for new: it is remembered here instead, as the real import's rows would be.
    planned: set[str] = field(default_factory=set)

    def chunk(self, s: Session, rows: list[Row]) -> None:
        seq = s.get_one(Sequence, self.seq_id)
        latest = {r.email: r for r in rows}  # a repeated address: its last row wins
        # Known, forgotten, or the same mailbox left under another spelling: the one-by-one
        # path keeps every consent rule for these (subscribers/operator.py).
        careful = _known(s, latest) | _suppressed(s, latest) | set(left_elsewhere(s, latest))
        fresh = [r for e, r in latest.items() if e not in careful and e not in self.planned]
        self.result.repeated += len(rows) - len(latest)
        for email, row in latest.items():
            if email in self.planned and email not in careful:
                self.result.already += 1
            elif email in careful:
                self._known(s, seq, row)
        if fresh and self.dry_run:
            self._plan_new(s, seq, fresh)
        elif fresh:
            _insert_new(s, seq, fresh, self.confirmed, self.result)
        self.result.added += len(fresh)
        s.flush()

    def _known(self, s: Session, seq: Sequence, row: Row) -> None:
        sub = find_subscriber(s, row.email)
        if self.dry_run:
            added = decide(
                s, row.email, sub, seq, self.confirmed, put_back=False
            ) or self._would_add(s, seq, row, sub)
        else:
            added = add_by_operator(
                s,
                row.email,
                seq,
                first_name=row.first_name,
                timezone=row.timezone,
                confirmed=self.confirmed,
                source="import",
                consent_text=IMPORT_CONSENT,
                consent_version=IMPORT_CONSENT_VERSION,
                waiting=False,
                update_name=False,  # a differing name is this method's to report (below)
                put_back=False,
            )
        if added.outcome == Outcome.SKIPPED:
            self.result.refuse(row.line, added.reason or "skipped")
            return
        if added.outcome == Outcome.ALREADY:
            self.result.already += 1
        else:
            self.result.updated += 1
        if added.first_due is not None:
            self.result.first_sends[added.first_due] += 1
        held = sub.first_name if sub is not None else None
        if held and row.first_name and held != row.first_name:
            self.result.name_differs(row.line, held, row.first_name, self.update_names)
            if self.update_names and not self.dry_run and sub is not None:
                rename(sub, row.first_name)

    def _would_add(
        self, s: Session, seq: Sequence, row: Row, sub: Subscriber | None
    ) -> OperatorAdd:
        """What add_by_operator would answer, without adding: ADDED, with the first send
        when --confirmed starts them (a person already confirmed starts too, minus the
        steps they had, as start_enrollment does)."""
        due = None
        if self.confirmed:
            steps = live_steps(s, seq.id)
            if sub is not None:
                had = set(
                    s.scalars(
                        select(Delivery.step_id)
                        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
                        .where(Enrollment.subscriber_id == sub.id, Enrollment.sequence_id == seq.id)
                    )
                )
                steps = [st for st in steps if st.id not in had]
            tz = row.timezone or (sub.timezone if sub is not None else None)
            if steps:
                due = first_send(seq, tz, now(), steps[0].delay_seconds, waiting=False)
        return OperatorAdd(Outcome.ADDED, first_due=due)

    def _plan_new(self, s: Session, seq: Sequence, rows: list[Row]) -> None:
        self.planned.update(r.email for r in rows)
        steps = live_steps(s, seq.id) if self.confirmed else []
        for r in rows:
            if steps:
                due = first_send(seq, r.timezone, now(), steps[0].delay_seconds, waiting=False)
                self.result.first_sends[due] += 1


def _known(s: Session, addresses: dict[str, Row]) -> set[str]:
    by_index = {email_index(e): e for e in addresses}
    q = select(Subscriber.email_index).where(Subscriber.email_index.in_(list(by_index)))
    return {by_index[i] for i in s.scalars(q)}


def _suppressed(s: Session, addresses: dict[str, Row]) -> set[str]:
    by_key = {k: e for e in addresses for k in suppression_keys(e)}
    q = select(Suppression.email_hash).where(Suppression.email_hash.in_(list(by_key)))
    return {by_key[k] for k in s.scalars(q)}


def _insert_new(
    s: Session, seq: Sequence, rows: list[Row], confirmed: bool, result: ImportResult
) -> None:
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
    enrollments = _new_enrollments(s, seq, ids, rows, confirmed, t)
    result.first_sends.update(e["next_due_at"] for e in enrollments if "next_due_at" in e)
    s.execute(insert(Enrollment), enrollments)
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
    start_enrollment starts one for someone not waiting (completed at once when the
    sequence has no live step)."""
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
                due[r.timezone] = first_send(
                    seq, r.timezone, t, steps[0].delay_seconds, waiting=False
                )
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
