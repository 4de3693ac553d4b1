"""An import starts nobody at 01:28 their time: imported people are not waiting for a
welcome, so with --confirmed each first email keeps to the reader's own send window, and
the import says when the first emails go, in the practice's zone (issue 21). A reader who
has just confirmed on the form still gets the welcome at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.subscribers.confirmation import confirm_by_token
from nurture.subscribers.models import Enrollment, Subscriber
from tests.cli_helpers import drain, run
from tests.conftest import reload_runtime
from tests.web_support import link_in

# Saturday 2026-03-07 06:28 UTC: 01:28 in New York, 07:28 in Paris, 15:28 in Tokyo; the
# quick sequence's window is 09:00-11:00 every day, in the reader's zone.
NIGHT = datetime(2026, 3, 7, 6, 28, tzinfo=UTC)


@pytest.fixture
def practice_in_maryland(monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> FrozenClock:
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    reload_runtime()
    clock.set(NIGHT)
    return clock


def _due() -> dict[str, datetime | None]:
    with transaction() as s:
        rows = s.execute(select(Subscriber, Enrollment).join(Enrollment))
        return {sub.email: enr.next_due_at for sub, enr in rows}


def test_a_confirmed_import_at_night_sends_nothing_until_each_readers_window(
    quick_sequence: str, practice_in_maryland: FrozenClock, tmp_path: Path
) -> None:
    clock = practice_in_maryland
    path = tmp_path / "list.csv"
    path.write_text(
        "email,first_name,timezone\n"
        "ann@example.com,Ann,\n"  # the sequence's zone: New York
        "bea@example.com,Bea,Europe/Paris\n"
        "cy@example.com,Cy,Asia/Tokyo\n"
    )
    ran = run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert ran.code == 0, ran.err
    assert drain() == 0  # nobody is woken at 01:28 by a list being loaded
    assert _due() == {
        "ann@example.com": datetime(2026, 3, 7, 14, 0, tzinfo=UTC),  # 09:00 New York
        "bea@example.com": datetime(2026, 3, 7, 8, 0, tzinfo=UTC),  # 09:00 Paris
        "cy@example.com": datetime(2026, 3, 8, 0, 0, tzinfo=UTC),  # 09:00 Tokyo, Sunday
    }
    # When the first emails go, in the practice's clock, its zone named.
    assert (
        "first emails (America/New_York time): 1 at Sat 2026-03-07 03:00, "
        "1 at Sat 2026-03-07 09:00, 1 at Sat 2026-03-07 19:00\n"
    ) in ran.out
    clock.set(datetime(2026, 3, 7, 8, 0, tzinfo=UTC))
    assert drain() == 1  # Bea, at 09:00 in Paris


def test_someone_known_and_pending_imported_as_confirmed_waits_for_their_window(
    quick_sequence: str, practice_in_maryland: FrozenClock, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,timezone\nann@example.com,America/Chicago\n")
    assert run("subscribers", "import", str(path), "--sequence", "quick").code == 0
    ran = run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert "0 new, 1 already known" in ran.out
    assert drain() == 0
    assert _due() == {"ann@example.com": datetime(2026, 3, 7, 15, 0, tzinfo=UTC)}  # 09:00 CST
    assert "first emails (America/New_York time): 1 at Sat 2026-03-07 10:00" in ran.out


def test_inside_the_window_the_first_emails_go_now_and_the_import_says_so(
    quick_sequence: str, practice_in_maryland: FrozenClock, tmp_path: Path
) -> None:
    practice_in_maryland.set(datetime(2026, 3, 7, 14, 30, tzinfo=UTC))  # 09:30 in New York
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.com\nbob@example.com\n")
    ran = run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert "first emails (America/New_York time): 2 now (inside their send window)" in ran.out
    assert drain() == 2


def test_an_import_without_confirmed_says_nobody_is_mailed(
    quick_sequence: str, practice_in_maryland: FrozenClock, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.com\n")
    ran = run("subscribers", "import", str(path), "--sequence", "quick")
    assert "first emails: none; they wait as pending until they confirm" in ran.out


def test_a_reader_confirming_on_the_form_still_gets_the_welcome_at_once(
    quick_sequence: str, practice_in_maryland: FrozenClock, tmp_path: Path, outbox: list
) -> None:
    assert run("subscribers", "add", "ann@example.com", "--sequence", "quick").code == 0
    token = link_in(outbox[-1], "confirm").rsplit("/", 1)[1]
    confirm_by_token(token)
    assert drain() == 1  # 01:28 in New York, but she is waiting for it
