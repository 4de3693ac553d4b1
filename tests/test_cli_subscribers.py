"""`nurture subscribers ...`: add, import, list, show, export, unsubscribe, booked, forget."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.models import Delivery
from nurture.events.models import Event
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.models import Consent, Enrollment, Subscriber
from nurture.subscribers.suppression import is_suppressed
from tests.cli_helpers import drain, dump, run


def count(model: type) -> int:
    with transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def add_ann() -> None:
    args = ("ann@example.com", "--sequence", "quick", "--confirmed", "--name", "Ann")
    assert run("subscribers", "add", *args).code == 0


def test_add_and_errors(quick_sequence: str, clock: FrozenClock) -> None:
    ran = run("subscribers", "add", "Ann@Example.com", "--sequence", "quick", "--confirmed")
    assert (ran.code, ran.out) == (0, "added to quick (confirmed)\n")
    bad = run("subscribers", "add", "not-an-email", "--sequence", "quick")
    assert bad.code == 1 and bad.err.startswith("Error: not a valid email address")
    unknown = run("subscribers", "add", "bob@example.com", "--sequence", "nope")
    assert unknown.code == 1 and "no sequence 'nope'" in unknown.err
    tz = run(
        "subscribers", "add", "bob@example.com", "--sequence", "quick", "--timezone", "Mars/Base"
    )
    assert tz.code == 1 and "unknown time zone 'Mars/Base'" in tz.err
    assert run("subscribers", "add", "bob@example.com").code == 2  # --sequence missing


def test_import_confirmed_enrols_everyone(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "people.csv",
        [
            "email,first_name,timezone",
            "ann@example.com,Ann,Europe/Paris",
            "BOB@example.com,,",
            "",
            "cy@example.com,Cy,",
        ],
    )
    ran = run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert ran.code == 0, ran.err
    assert "imported 3 into quick: 3 new, 0 already known" in ran.out
    rows = run("subscribers", "list", "--sequence", "quick", "--status", "active", "--json").json()
    assert sorted(r["email"] for r in rows) == [
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
    ]
    # 09:00 in New York, inside the window; 15:00 in Paris, Ann's email waits for her morning.
    assert drain() == 2
    with transaction() as s:
        assert {c.source for c in s.scalars(select(Consent))} == {"import"}
    again = run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert "0 new, 0 already known, 3 already enrolled" in again.out
    assert count(Subscriber) == 3


def test_import_bad_row_reports_line_and_imports_nothing(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = write_csv(
        tmp_path / "people.csv",
        [
            "email,first_name,timezone",
            "ann@example.com,Ann,",
            "not-an-email,Bob,",
            "cy@example.com,Cy,Nowhere/City",
        ],
    )
    before = dump(db)
    ran = run("subscribers", "import", str(path), "--sequence", "quick")
    assert ran.code == 1
    assert f"{path}: line 3: not a valid email address" in ran.err
    assert f"{path}: line 4: unknown time zone 'Nowhere/City'" in ran.err
    assert ran.err.endswith("Error: 2 bad row(s), nothing imported\n")
    assert dump(db) == before
    skipped = run("subscribers", "import", str(path), "--sequence", "quick", "--skip-invalid")
    assert skipped.code == 0
    assert "imported 1 into quick: 1 new, 0 already known, 2 bad row(s) skipped" in skipped.out
    assert count(Subscriber) == 1


def test_import_file_errors(quick_sequence: str, tmp_path: Path) -> None:
    no_email = write_csv(tmp_path / "a.csv", ["name,timezone", "Ann,"])
    ran = run("subscribers", "import", str(no_email), "--sequence", "quick")
    # The file's own columns are named, not the ones expected.
    assert ran.code == 1
    assert f'{no_email}:1: no column of email addresses; the file\'s columns: "name", ' in ran.err
    empty = write_csv(tmp_path / "b.csv", [])
    empty.write_text("")
    assert (
        "the file is empty" in run("subscribers", "import", str(empty), "--sequence", "quick").err
    )
    missing = run("subscribers", "import", str(tmp_path / "none.csv"), "--sequence", "quick")
    assert missing.code == 1
    unknown = run("subscribers", "import", str(no_email), "--sequence", "nope")
    assert unknown.code == 1 and "no sequence 'nope'" in unknown.err


def test_show_tells_the_whole_story(quick_sequence: str, clock: FrozenClock) -> None:
    add_ann()
    drain()
    clock.advance(timedelta(minutes=1))
    drain()
    story = run("subscribers", "show", "ANN@example.com", "--json").json()
    assert story["status"] == "confirmed" and story["first_name"] == "Ann"
    assert story["consents"][0]["source"] == "cli"
    assert story["enrollments"][0]["last_step"] == "two"
    assert [(d["step"], d["status"]) for d in story["deliveries"]] == [
        ("one", "sent"),
        ("two", "sent"),
    ]
    assert [e["kind"] for e in story["events"]] == ["confirmed"]
    text = run("subscribers", "show", "ann@example.com")
    assert "deliveries" in text.out and "consents" in text.out
    missing = run("subscribers", "show", "nobody@example.com")
    assert (missing.code, missing.err) == (1, "Error: no subscriber with that address\n")
    assert run("subscribers", "show", "bad@").code == 1


def test_unsubscribe_and_booked_stop_mail(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    for who in ("ann", "bob"):
        run("subscribers", "add", f"{who}@example.com", "--sequence", "quick", "--confirmed")
    drain()
    assert run("subscribers", "unsubscribe", "ann@example.com").out == "unsubscribed\n"
    assert run("subscribers", "unsubscribe", "ann@example.com").out == "already unsubscribed\n"
    assert run("subscribers", "booked", "bob@example.com").out == "marked booked\n"
    assert run("subscribers", "booked", "bob@example.com").out == "already booked\n"
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        drain()
    assert len(outbox) == 2
    rows = {r["email"]: r for r in run("subscribers", "list", "--json").json()}
    assert rows["ann@example.com"]["enrollment"] == "unsubscribed"
    assert rows["bob@example.com"]["enrollment"] == "booked"
    assert (
        run("subscribers", "list", "--status", "booked", "--json").json()[0]["email"]
        == "bob@example.com"
    )
    assert run("subscribers", "list", "--status", "nonsense").code == 2
    assert run("subscribers", "unsubscribe", "nobody@example.com").code == 1
    assert run("subscribers", "booked", "nobody@example.com").code == 1


def test_export_csv_and_json(quick_sequence: str, clock: FrozenClock) -> None:
    run("subscribers", "add", "ann@example.com", "--sequence", "quick", "--name", "Ann")
    run("subscribers", "add", "bob@example.com", "--sequence", "quick", "--confirmed")
    rows = list(csv.DictReader(io.StringIO(run("subscribers", "export").out)))
    assert [(r["email"], r["status"], r["sequences"]) for r in rows] == [
        ("ann@example.com", "pending", "quick:pending"),
        ("bob@example.com", "confirmed", "quick:active"),
    ]
    data = json.loads(run("subscribers", "export", "--format", "json").out)
    assert [d["first_name"] for d in data] == ["Ann", None]
    assert run("subscribers", "export", "--format", "xml").code == 2


def test_forget_erases_everything_and_suppresses(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    add_ann()
    run("subscribers", "add", "bob@example.com", "--sequence", "quick", "--confirmed")
    drain()
    run("subscribers", "unsubscribe", "ann@example.com")
    ran = run("subscribers", "forget", "Ann@example.com", "--yes")
    assert (ran.code, ran.out) == (0, "forgotten: personal data erased, address suppressed\n")
    with transaction() as s:
        assert find_subscriber(s, "ann@example.com") is None
        assert s.scalar(select(func.count()).select_from(Enrollment)) == 1  # bob's
        assert s.scalar(select(func.count()).select_from(Consent)) == 1
        assert s.scalar(select(func.count()).select_from(Delivery)) == 1
        assert is_suppressed(s, "ann@example.com")
        events = list(s.scalars(select(Event)))
        # Events stay for the stats, with no link to ann and no free text.
        unsub = next(e for e in events if e.kind == "unsubscribed")
        assert unsub.subscriber_id is None and unsub.data == {} and unsub.step_id is not None
        dumped = repr([(e.kind, e.data, e.subscriber_id) for e in events])
        assert "ann" not in dumped.lower()
    again = run("subscribers", "add", "ann@example.com", "--sequence", "quick", "--confirmed")
    assert again.code == 1 and "asked to be forgotten" in again.err
    assert run("subscribers", "show", "ann@example.com").code == 1
    stats = run("stats", "quick", "--json").json()
    assert stats[0]["steps"][0]["unsubscribed"] == 1  # still counted, anonymously
    # Forgetting an address never held still suppresses it; doing it twice is harmless.
    assert "now suppressed" in run("subscribers", "forget", "cy@example.com", "--yes").out
    assert run("subscribers", "forget", "cy@example.com", "--yes").code == 0
    assert run("subscribers", "forget", "not an email", "--yes").code == 1


def test_import_leaves_out_forgotten_addresses(quick_sequence: str, tmp_path: Path) -> None:
    run("subscribers", "forget", "ann@example.com", "--yes")
    path = write_csv(tmp_path / "p.csv", ["email", "ann@example.com", "bob@example.com"])
    ran = run("subscribers", "import", str(path), "--sequence", "quick")
    assert "1 new" in ran.out and "1 skipped who left (1 forgotten)" in ran.out
    assert count(Subscriber) == 1


def test_every_command_help_has_an_example() -> None:
    from nurture.cli import cli

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, _ in walk(cli, []):
        ran = run(*path, "--help")
        assert ran.code == 0, path
        assert "Example:" in ran.out, f"nurture {' '.join(path)} --help has no example"


def test_import_merges_repeated_rows_and_waits_for_confirmation(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "p.csv",
        ["email,first_name", "ann@example.com,Annie", "ANN@example.com,Ann", "bob@example.com,"],
    )
    ran = run("subscribers", "import", str(path), "--sequence", "quick")
    assert "2 new, 0 already known, 1 repeated row(s) merged" in ran.out
    rows = {r["email"]: r for r in run("subscribers", "list", "--json").json()}
    assert rows["ann@example.com"]["first_name"] == "Ann"
    assert {r["enrollment"] for r in rows.values()} == {"pending"}  # not --confirmed
    assert drain() == 0
