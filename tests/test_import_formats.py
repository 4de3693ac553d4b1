"""A normal export is read as it is (issue 21): the header names of other tools, `;` and tab
separators, Excel's `sep=` line, `--column FIELD=HEADER` for any other name, and, when no
column holds addresses, an error naming the columns the file has."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.subscribers.importing import separator
from nurture.subscribers.models import Subscriber
from tests.cli_helpers import dump, run


def _people() -> dict[str, tuple[str | None, str | None]]:
    with transaction() as s:
        return {x.email: (x.first_name, x.timezone) for x in s.scalars(select(Subscriber))}


def _import(path: Path, *extra: str) -> tuple[int, str, str]:
    ran = run("subscribers", "import", str(path), "--sequence", "quick", *extra)
    return ran.code, ran.out, ran.err


# Header lines as each tool writes them (the columns around the ones we read included).
EXPORTS = {
    "mailchimp": (
        '"Email Address","First Name","Last Name","MEMBER_RATING","OPTIN_TIME","TIMEZONE"\n'
        '"ann@example.com","Ann","Lee","2","2026-01-02 10:00:00","Europe/Paris"\n'
    ),
    "kit": "first_name,email_address,state,created_at\nAnn,ann@example.com,active,2026-01-02\n",
    "google": (
        "Name,Given Name,Family Name,E-mail 1 - Type,E-mail 1 - Value,E-mail 2 - Value\n"
        "Ann Lee,Ann,Lee,* Home,ann@example.com,ann.lee@work.example\n"
    ),
    "outlook": (
        '"First Name","Middle Name","Last Name","E-mail Address","E-mail Display Name"\n'
        '"Ann","","Lee","ann@example.com","Ann Lee (ann@example.com)"\n'
    ),
    "semicolons": "Email;Vorname;First Name\nann@example.com;X;Ann\n",
    "tabs": "E-mail\tFirst name\ttz\nann@example.com\tAnn\t\n",
    "excel": "sep=;\nEMAIL;FIRSTNAME\nann@example.com;Ann\n",
    "bom": "\ufeffEmail Address,First Name\nann@example.com,Ann\n",
}


@pytest.mark.parametrize("tool", sorted(EXPORTS))
def test_an_export_of_another_tool_is_read_as_it_is(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, tool: str
) -> None:
    path = tmp_path / f"{tool}.csv"
    path.write_text(EXPORTS[tool], encoding="utf-8")
    code, out, err = _import(path)
    assert code == 0, err
    assert "imported 1 into quick: 1 new" in out
    tz = "Europe/Paris" if tool == "mailchimp" else None
    assert _people() == {"ann@example.com": ("Ann", tz)}


def test_column_names_any_header(quick_sequence: str, clock: FrozenClock, tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("Kontakt;Rufname;Zone\nann@example.com;Ann;Europe/Berlin\n")
    code, _, err = _import(
        path, "--column", "email=kontakt", "--column", "first_name=Rufname", "--column",
        "timezone=Zone",
    )  # fmt: skip
    assert code == 0, err
    assert _people() == {"ann@example.com": ("Ann", "Europe/Berlin")}
    # --column wins over a header nurture would otherwise take.
    path.write_text("email,E-mail 1\nold@example.com,bob@example.com\n")
    assert _import(path, "--column", "email=E-mail 1")[0] == 0
    assert "bob@example.com" in _people() and "old@example.com" not in _people()


def test_no_email_column_names_the_columns_found(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("Name;Phone;Notes\nAnn Lee;555;x\n")
    before = dump(db)
    code, _, err = _import(path)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: {path}:1: no column of email addresses; the file's columns: "
        '"Name", "Phone", "Notes". Name the one that holds them: --column email="..."'
    )
    assert dump(db) == before
    code, _, err = _import(path, "--column", "email=Mail")
    assert (
        code == 1 and f'{path}:1: no column "Mail" (--column email); the file\'s columns: ' in err
    )
    many = tmp_path / "wide.csv"
    many.write_text(",".join(f"c{i}" for i in range(30)) + "\n")
    assert '"c11" and 18 more' in _import(many)[2]


def test_two_columns_that_could_be_the_address_are_not_guessed(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    path = tmp_path / "both.csv"
    path.write_text("email,Email Address\nann@example.com,bob@example.com\n")
    code, _, err = _import(path)
    assert code == 1
    assert '"email" and "Email Address" could both be the email column' in err
    assert _people() == {}


def test_bad_column_options_are_usage_errors(quick_sequence: str, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("email\nann@example.com\n")
    for bad in ("email", "surname=Last", "email="):
        assert (
            run("subscribers", "import", str(path), "--sequence", "quick", "--column", bad).code
            == 2
        )


def test_the_separator_is_read_from_the_header() -> None:
    assert separator("email,first_name\n") == (",", False)
    assert separator("Email Address;First Name\r\n") == (";", False)
    assert separator("email\tname\n") == ("\t", False)
    assert separator("email\n") == (",", False)
    assert separator('"Name, full";email;x\n') == (";", False)  # a quoted comma is not one
    assert separator("sep=;\n") == (";", True)
