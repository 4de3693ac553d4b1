"""`nurture subscribers import`: a bad row is reported at the file's real line, with words a
person understands, whatever made it unreadable (issue 19); and nothing is imported unless
--skip-invalid, which then imports every good row, also those after the bad one."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.subscribers.models import Subscriber
from tests.cli_helpers import dump, run

LIMIT = csv.field_size_limit()  # 131072 unless something changed it


def _imported() -> list[str]:
    with transaction() as s:
        return sorted(sub.email for sub in s.scalars(select(Subscriber)))


def _import(path: Path, *extra: str) -> tuple[int, str, str]:
    ran = run("subscribers", "import", str(path), "--sequence", "quick", *extra)
    return ran.code, ran.out, ran.err


def test_a_row_that_is_not_utf8_is_reported_at_its_line_and_the_rest_still_read(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"email,first_name\n"
        b"ann@example.com,Ann\n"
        b"bob@example.com,Jos\xe9\n"  # line 3: Latin-1, as Excel's plain "CSV" saves it
        b"cy@example.com,Cy\n"
        b"not-an-email,Di\n"  # line 5: must still be found
    )
    before = dump(db)
    code, _, err = _import(path)
    assert code == 1
    assert f'{path}: line 3: not UTF-8 text (in a spreadsheet, save the file as "CSV UTF-8")' in err
    assert f"{path}: line 5: not a valid email address" in err
    assert err.endswith("Error: 2 bad row(s), nothing imported\n")
    assert dump(db) == before
    code, out, _ = _import(path, "--skip-invalid")
    assert code == 0 and "2 bad row(s) skipped" in out
    assert _imported() == ["ann@example.com", "cy@example.com"]  # cy comes after the bad row
    path.write_bytes(b"email,pr\xe9nom\nzed@example.com,Zed\n")
    code, _, err = _import(path)
    assert code == 1 and f"{path}:1: not UTF-8 text" in err


def test_rows_after_a_multi_line_quoted_field_keep_their_real_line(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes(
        b"email,first_name,timezone\r\n"
        b'ann@example.com,"Ann\r\nMarie",\r\n'  # lines 2-3: one row
        b"bob@example.com,Bob,Nowhere/City\r\n"  # line 4
        b'not-an-email,"Cy\r\n\r\nSmith",\r\n'  # lines 5-7: reported where it starts
    )
    code, _, err = _import(path)
    assert code == 1
    assert f"{path}: line 4: unknown time zone 'Nowhere/City'" in err
    assert f"{path}: line 5: not a valid email address" in err


def test_a_field_over_the_csv_limit_is_said_in_words_on_its_line(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes(
        b"email,first_name\n"
        b"ann@example.com,Ann\n"
        b"bob@example.com," + b"x" * (LIMIT + 10) + b"\n"  # line 3
        b"cy@example.com,Cy\n"
        b"not-an-email,Di\n"  # line 5
    )
    before = dump(db)
    code, _, err = _import(path)
    assert code == 1
    assert f"{path}: line 3: a field is longer than {LIMIT} characters" in err
    assert f"{path}: line 5: not a valid email address" in err
    assert "unreadable row" not in err
    assert dump(db) == before
    assert _import(path, "--skip-invalid")[0] == 0
    assert _imported() == ["ann@example.com", "cy@example.com"]


def test_a_long_quoted_field_over_many_lines_is_one_bad_row_not_thousands(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    """The rest of the field is the field: its lines must not come back as rows (one of them
    could even look like an address, and be imported without consent)."""
    lines = LIMIT // 20 + 10
    notes = b"".join(b"see someone@example.net about this\n" for _ in range(lines))
    path = tmp_path / "notes.csv"
    path.write_bytes(
        b"email,first_name\n"
        b"ann@example.com,Ann\n"
        b'bob@example.com,"' + notes + b'"\n'  # lines 3 to 3 + lines: one row
        b"cy@example.com,Cy\n"
    )
    code, _, err = _import(path)
    assert code == 1
    assert f"{path}: line 3: a field is longer than {LIMIT} characters" in err
    assert err.endswith("Error: 1 bad row(s), nothing imported\n"), err[-300:]
    assert _import(path, "--skip-invalid")[0] == 0
    assert _imported() == ["ann@example.com", "cy@example.com"]
