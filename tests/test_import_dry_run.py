"""`subscribers import --dry-run` says everything the import would do (new, known, skipped
and why, names that differ, first sends) and changes nothing; a re-import keeps the name we
hold unless --update-names, and says so at each line (issue 21)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.subscribers import importing
from nurture.subscribers.models import Subscriber
from tests.cli_helpers import dump, run


def _names() -> dict[str, str | None]:
    with transaction() as s:
        return {x.email: x.first_name for x in s.scalars(select(Subscriber))}


def _import(path: Path, *extra: str, slug: str = "quick") -> tuple[int, str, str]:
    ran = run("subscribers", "import", str(path), "--sequence", slug, *extra)
    return ran.code, ran.out, ran.err


def _known_people(tmp_path: Path) -> Path:
    """Alex known (confirmed, in quick), Bob unsubscribed; then a file that names them again
    beside two new people, one of them twice."""
    first = tmp_path / "first.csv"
    first.write_text("email,first_name\nalex@example.com,Alex\nbob@example.com,Bob\n")
    assert _import(first, "--confirmed")[0] == 0
    assert run("subscribers", "unsubscribe", "bob@example.com").code == 0
    again = tmp_path / "again.csv"
    again.write_text(
        "Email Address,First Name\n"
        "alex@example.com,Alexandra\n"  # line 2: a name that differs
        "bob@example.com,Bob\n"  # line 3: unsubscribed
        "cy@example.com,Cy\n"
        "dee@example.com,Dee\n"
        "DEE@example.com,Dee\n"
    )
    return again


def test_a_dry_run_says_what_would_happen_and_changes_nothing(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = _known_people(tmp_path)
    before = dump(db)
    code, out, err = _import(path, "--dry-run", "--confirmed")
    assert code == 0, err
    assert out.splitlines() == [
        "would import 2 into quick: 2 new, 0 already known, 1 already enrolled, "
        "1 skipped who left (1 unsubscribed), 1 repeated row(s) merged",
        'line 2: name "Alex" kept; this row says "Alexandra" (--update-names takes it)',
        "line 3: skipped: unsubscribed",
        f"first emails ({_zone()} time): 2 now (inside their send window)",
        "dry run: nothing changed",
    ]
    assert dump(db) == before
    # The import itself then does and says the same.
    code, out, _ = _import(path, "--confirmed")
    assert out.splitlines()[:3] == [
        "imported 2 into quick: 2 new, 0 already known, 1 already enrolled, "
        "1 skipped who left (1 unsubscribed), 1 repeated row(s) merged",
        'line 2: name "Alex" kept; this row says "Alexandra" (--update-names takes it)',
        "line 3: skipped: unsubscribed",
    ]
    assert _names()["alex@example.com"] == "Alex"


def test_update_names_takes_the_files_name_and_says_so(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    path = _known_people(tmp_path)
    before = dump(db)
    _, out, _ = _import(path, "--update-names", "--dry-run")
    assert 'line 2: name would change from "Alex" to "Alexandra"' in out
    assert dump(db) == before
    _, out, _ = _import(path, "--update-names")
    assert 'line 2: name changed from "Alex" to "Alexandra"' in out
    assert _names()["alex@example.com"] == "Alexandra"


def test_another_sequences_import_does_not_rename_anyone(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    other = tmp_path / "seqs" / "other"
    other.mkdir(parents=True)
    src = Path(__file__).parent / "fixtures" / "sequences" / "quick"
    for f in src.iterdir():
        text = f.read_text().replace("slug: quick", "slug: other")
        (other / f.name).write_text(text)
    assert run("sequences", "apply", str(other)).code == 0
    first = tmp_path / "a.csv"
    first.write_text("email,first_name\nalex@example.com,Alex\n")
    assert _import(first)[0] == 0
    second = tmp_path / "b.csv"
    second.write_text("email,first_name\nalex@example.com,Alexandra\n")
    code, out, _ = _import(second, slug="other")
    assert code == 0 and "1 already known" in out
    assert 'line 2: name "Alex" kept' in out
    assert _names() == {"alex@example.com": "Alex"}
    # A name missing before is filled in: nothing is lost by taking it.
    none = tmp_path / "c.csv"
    none.write_text("email\nzoe@example.com\n")
    _import(none)
    named = tmp_path / "d.csv"
    named.write_text("email,first_name\nzoe@example.com,Zoe\n")
    _, out, _ = _import(named, slug="other")
    assert "name" not in out.split("\n", 1)[1]
    assert _names()["zoe@example.com"] == "Zoe"


def test_a_dry_run_over_several_chunks_counts_a_repeated_address_once(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path, db: str, monkeypatch
) -> None:
    monkeypatch.setattr(importing, "CHUNK", 2)
    path = tmp_path / "p.csv"
    path.write_text("email\na@example.com\nb@example.com\nc@example.com\na@example.com\n")
    _, dry, _ = _import(path, "--dry-run", "--confirmed")
    _, real, _ = _import(path, "--confirmed")
    assert dry.splitlines()[0] == "would " + real.splitlines()[0].replace("imported", "import")
    assert "3 new, 0 already known, 1 already enrolled" in real


def test_a_dry_run_names_first_sends_like_the_import(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    clock.set(datetime(2026, 3, 7, 6, 28, tzinfo=UTC))  # 01:28 in New York
    path = tmp_path / "p.csv"
    path.write_text("email,timezone\nann@example.com,\nbea@example.com,Europe/Paris\n")
    _, dry, _ = _import(path, "--dry-run", "--confirmed")
    _, real, _ = _import(path, "--confirmed")
    first = [line for line in real.splitlines() if line.startswith("first emails")]
    assert first and first[0] in dry.splitlines()


def _zone() -> str:
    from nurture.clock import practice_zone

    zone = practice_zone()
    return str(getattr(zone, "key", None) or zone.tzname(None))
