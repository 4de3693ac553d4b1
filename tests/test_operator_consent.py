"""Operators never put back people who left; adding twice says so; exports carry no formulas."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.leaving import mark_bounced
from nurture.subscribers.models import Consent, Subscriber
from tests.cli_helpers import drain, run


def _left(outbox: list) -> None:
    """bob unsubscribed, carl bounced, dan forgotten; each had been confirmed and mailed."""
    for who in ("bob", "carl", "dan"):
        added = run(
            "subscribers", "add", f"{who}@example.com", "--sequence", "quick", "--confirmed"
        )
        assert added.code == 0, added.err
    drain()
    assert run("subscribers", "unsubscribe", "bob@example.com").code == 0
    with transaction() as s:
        carl = find_subscriber(s, "carl@example.com")
        assert carl is not None
        mark_bounced(s, carl, "550 5.1.1")
    assert run("subscribers", "forget", "dan@example.com", "--yes").code == 0
    outbox.clear()


def _consents() -> int:
    with transaction() as s:
        return len(list(s.scalars(select(Consent.id))))


def test_add_never_puts_back_someone_who_left(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    _left(outbox)
    consents = _consents()
    for who, reason in (("bob", "unsubscribed"), ("carl", "bounced"), ("dan", "forgotten")):
        for flags in ((), ("--confirmed",)):
            ran = run("subscribers", "add", f"{who}@example.com", "--sequence", "quick", *flags)
            assert ran.code == 1, (who, flags)
            assert ran.err.startswith("Error: skipped") and reason in ran.err
            assert ran.err.count("\n") == 1
    with transaction() as s:
        statuses = {x.email: x.status for x in s.scalars(select(Subscriber))}
    assert statuses == {"bob@example.com": "unsubscribed", "carl@example.com": "bounced"}
    assert _consents() == consents
    assert drain() == 0 and outbox == []


def test_import_never_puts_back_someone_who_left(
    quick_sequence: str, clock: FrozenClock, outbox: list, tmp_path: Path
) -> None:
    _left(outbox)
    consents = _consents()
    path = tmp_path / "old.csv"
    rows = ["email", "bob@example.com", "carl@example.com", "DAN@example.com", "eve@example.com"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    for flags in (("--confirmed",), ()):
        ran = run("subscribers", "import", str(path), "--sequence", "quick", *flags)
        assert ran.code == 0, ran.err
        assert "3 skipped who left (1 bounced, 1 forgotten, 1 unsubscribed)" in ran.out
    assert "bob" not in ran.out and "carl" not in ran.out
    assert _consents() == consents + 1  # eve only
    assert drain() == 1
    assert [str(m["To"]) for m in outbox] == ["eve@example.com"]


def test_adding_someone_enrolled_says_so_and_records_no_second_consent(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    first = run("subscribers", "add", "ann@example.com", "--sequence", "quick", "--confirmed")
    assert first.out.startswith("added to quick")
    for flags in ((), ("--confirmed",)):
        again = run("subscribers", "add", "ann@example.com", "--sequence", "quick", *flags)
        assert again.code == 0
        assert again.out == "already enrolled in quick (active): nothing changed\n"
    assert _consents() == 1
    assert drain() == 1


def test_a_pending_person_may_be_confirmed_by_the_operator(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    assert run("subscribers", "add", "ann@example.com", "--sequence", "quick").code == 0
    assert len(outbox) == 1  # the confirmation
    again = run("subscribers", "add", "ann@example.com", "--sequence", "quick")
    assert "already enrolled in quick (pending)" in again.out
    assert len(outbox) == 1
    confirmed = run("subscribers", "add", "ann@example.com", "--sequence", "quick", "--confirmed")
    assert confirmed.out.startswith("added to quick (confirmed)")
    assert drain() == 1


def test_export_neutralises_spreadsheet_formulas(quick_sequence: str, clock: FrozenClock) -> None:
    names = {
        "a@example.com": '=HYPERLINK("http://evil.test","x")',
        "b@example.com": "+1+2",
        "c@example.com": "@SUM(A1)",
        "d@example.com": "-5",
    }
    for email, name in names.items():
        assert run("subscribers", "add", email, "--sequence", "quick", "--name", name).code == 0
    assert run("subscribers", "add", "--sequence", "quick", "--", "-x@example.com").code == 0
    out = run("subscribers", "export").out
    rows = list(csv.DictReader(io.StringIO(out)))
    by_email = {r["email"]: r for r in rows}
    for email, name in names.items():
        assert by_email[email]["first_name"] == "'" + name
    assert "'-x@example.com" in by_email
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
