"""The operator's day (issue 13): listings that work in a pipe, one-line errors, messages that
point at the mistake, repeats reported as repeats, deferrals said out loud, test sends that
touch no real email."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import get_subscriber, rename
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from tests.cli_helpers import drain, dump, run, sequence_copy
from tests.conftest import ROOT
from tests.support import free_port
from tests.web_support import csrf, subscriber

LONG = "reader.one.with.a.rather.long.local.part@example.com"
EVIL = "Ann\x1b]0;owned\x07\x1b[2J\x1b[31mRed\u202e\tTab\nLine"


def _people(slug: str = "quick") -> None:
    with transaction() as s:
        seq = get_sequence(s, slug)
        add_subscriber(s, LONG, seq, first_name="Ann", confirmed=True)
        add_subscriber(s, "bob@example.com", seq, confirmed=True)
        # Written past any input cleaning: output must be safe whatever the database holds
        # (rows from before input cleaning, an import from elsewhere).
        rename(get_subscriber(s, LONG), EVIL)


def _nurture(
    *args: str, env: dict[str, str], cwd: Path, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nurture.cli", *args],
        env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, stdin=stdin,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# --- Output: tables on a terminal, TSV in a pipe, --json everywhere -------------------------


def test_listings_in_a_pipe_are_one_tab_separated_line_per_row(
    quick_sequence: str, clock: FrozenClock, settings_env: dict[str, str], tmp_path: Path
) -> None:
    _people()
    # A real pipe, as `nurture subscribers list | grep reader.one` gives it.
    ran = _nurture("subscribers", "list", env=dict(os.environ), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].split("\t") == [
        "email", "first_name", "status", "sequence", "enrollment", "last_step", "next_due_at",
    ]  # fmt: skip
    row = next(line for line in lines if "reader.one" in line)
    cells = row.split("\t")
    assert cells[0] == LONG  # whole, not wrapped at 80 columns
    assert cells[1] == "AnnRed Tab Line"  # escapes and controls gone, tab and newline a space
    assert "\x1b" not in ran.stdout and "\u202e" not in ran.stdout
    assert len(lines) == 3 and all(line.count("\t") == 6 for line in lines)


def test_every_listing_pipes_as_tsv_and_takes_json(quick_sequence: str, clock: FrozenClock) -> None:
    _people()
    assert drain() == 2
    for args in (
        ["sequences", "list"],
        ["sequences", "show", "quick"],
        ["subscribers", "list"],
        ["schedule"],
        ["stats"],
        ["deliveries", "list"],
        ["articles", "list"],
    ):
        piped = run(*args)
        assert piped.code == 0, (args, piped.err)
        assert "│" not in piped.out and "━" not in piped.out and "\x1b" not in piped.out
        assert "\t" in piped.out.splitlines()[0], (args, piped.out)
        as_json = run(*args, "--json")
        assert as_json.code == 0 and isinstance(as_json.json(), list), args
    # stats: step keys whole, one row per step
    stats = run("stats").out.splitlines()
    assert stats[0].startswith("sequence\tstatus\tkey\tposition\tsent")
    assert [line.split("\t")[2] for line in stats[1:]] == ["one", "two", "three", "four"]


def test_show_and_list_json_keep_the_contract_keys(quick_sequence: str, clock: FrozenClock) -> None:
    _people()
    shown = run("subscribers", "show", LONG, "--json").json()
    assert {"email", "status", "enrollments", "deliveries", "events"} <= set(shown)
    assert {"sequence", "status", "next_step", "next_due_at"} <= set(shown["enrollments"][0])
    assert shown["first_name"] == EVIL  # JSON is data: escaped by json, never altered
    rows = run("subscribers", "list", "--json").json()
    assert {"email", "status", "sequence", "enrollment", "next_due_at"} <= set(rows[0])
    exported = run("subscribers", "export", "--json")
    assert exported.code == 0 and {r["email"] for r in exported.json()} == {LONG, "bob@example.com"}


def test_tables_on_a_terminal_with_nothing_that_drives_it(
    quick_sequence: str, clock: FrozenClock
) -> None:
    _people()
    table = run("subscribers", "list", terminal=True)
    assert "│" in table.out or "┃" in table.out
    assert "\x1b]" not in table.out and "\x1b[2J" not in table.out and "\u202e" not in table.out
    shown = run("subscribers", "show", LONG, terminal=True)
    assert "AnnRed Tab Line" in shown.out and "\x1b" not in shown.out


def test_a_real_terminal_gets_a_table(
    quick_sequence: str, clock: FrozenClock, tmp_path: Path
) -> None:
    _people()
    pid, fd = pty.fork()
    if pid == 0:  # the child: `nurture sequences list` on a pseudo-terminal
        os.environ["PYTHONPATH"] = str(ROOT)
        os.environ["COLUMNS"] = "120"
        os.execv(sys.executable, [sys.executable, "-m", "nurture.cli", "sequences", "list"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "quick" in text and ("│" in text or "┃" in text) and "\t" not in text


def test_error_messages_are_cleaned_too(db: str) -> None:
    ran = run("subscribers", "show", "x\x1b[2J@example.com")
    assert ran.code == 1 and "\x1b" not in ran.err and ran.err.count("\n") == 1


# --- One line, exit 1, nothing created ---------------------------------------------------


def test_no_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    for args in (["sequences", "list"], ["subscribers", "list"], ["stats"], ["schedule"]):
        ran = _nurture(*args, env=env, cwd=tmp_path)
        assert ran.returncode == 1, ran
        assert ran.stderr.strip().splitlines() == [
            "Error: no database at nurture.db: run `nurture db upgrade` here first, "
            "or set NURTURE_DATABASE_URL"
        ]
        assert "Traceback" not in ran.stderr
    assert list(tmp_path.iterdir()) == []  # no empty nurture.db left behind
    (tmp_path / "nurture.db").touch()  # a file without the schema
    ran = _nurture("sequences", "list", env=env, cwd=tmp_path)
    assert ran.returncode == 1
    assert (
        ran.stderr.strip()
        == "Error: the database has no tables yet: run `nurture db upgrade` first"
    )


def test_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    url = f"postgresql+psycopg://nurture:s3cret-pw@127.0.0.1:{free_port()}/nurture"
    env["NURTURE_DATABASE_URL"] = url
    ran = _nurture("subscribers", "list", env=env, cwd=tmp_path)
    assert ran.returncode == 1
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot use the database (postgresql at")
    assert "s3cret-pw" not in ran.stderr and "Traceback" not in ran.stderr


AT_LINE_3 = "three.md:3: step 3 (three): body: template error:"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Hi {{ subscriber.firstname }}\n", f"{AT_LINE_3} unknown variable 'firstname'"),
        ("Hi {{ 1 / 0 }}\n", f"{AT_LINE_3} division by zero"),
        ("Hi {{ subscriber.first_name() }}\n", AT_LINE_3),
        ("Hi {{ x.__class__ }}\n", AT_LINE_3),
    ],
    ids=["misspelt", "zero", "call", "sandbox"],
)
def test_template_errors_name_file_and_line_without_a_traceback(
    db: str, tmp_path: Path, body: str, expected: str
) -> None:
    folder = sequence_copy(tmp_path)
    (folder / "three.md").write_text("Hello\n\n" + body)
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 1 and ran.err.count("\n") == 1, ran.err
    assert expected in ran.err, ran.err


# --- Validation messages that point at the mistake ---------------------------------------


def test_a_misspelt_key_is_named_with_the_step_numbered_as_show_does(
    db: str, tmp_path: Path
) -> None:
    folder = sequence_copy(tmp_path)
    text = (folder / "sequence.yaml").read_text()
    (folder / "sequence.yaml").write_text(
        text.replace("{key: two, delay: 1m", "{key: two, dealy: 1m")
    )
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 1
    assert "sequence.yaml:12: step 2 (two): unknown key 'dealy' (did you mean 'delay'?)" in ran.err
    assert "Field required" not in ran.err


def test_discreet_subjects_naming_no_step_gives_the_line(db: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    text = (folder / "sequence.yaml").read_text()
    text += "discreet:\n  from_name: Notes\n  subjects:\n    one: Note 1\n    nope: Note 2\n"
    (folder / "sequence.yaml").write_text(text)
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 1
    assert "sequence.yaml:19: discreet.subjects: 'nope' is not a step key" in ran.err, ran.err


def test_dry_run_names_an_edited_body(quick_sequence: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    (folder / "two.md").write_text("A better second email.\n")
    ran = run("sequences", "apply", str(folder), "--dry-run")
    assert ran.code == 0
    assert "step two: body two.md edited" in ran.out, ran.out
    assert run("sequences", "apply", str(folder), "--dry-run", "--json").json()[0]["edits"] == {
        "two": ["body two.md"]
    }


# --- Repeats are reported as repeats ---------------------------------------------------


def test_pause_twice_says_it_was_already_paused(quick_sequence: str) -> None:
    assert run("sequences", "pause", "quick").out.startswith("quick: paused")
    again = run("sequences", "pause", "quick")
    assert again.code == 0 and again.out.startswith("quick: already paused")
    assert run("sequences", "resume", "quick").out.startswith("quick: resumed")
    assert run("sequences", "resume", "quick").out.startswith("quick: already sending")


def test_forget_asks_or_takes_yes(db: str, quick_sequence: str, clock: FrozenClock) -> None:
    _people()
    before = dump(db)
    ran = run("subscribers", "forget", "bob@example.com")  # no terminal to ask, no --yes
    assert ran.code == 1 and "--yes" in ran.err
    assert dump(db) == before
    assert run("subscribers", "forget", "bob@example.com", "--yes").code == 0
    assert subscriber("bob@example.com") is None


def _on_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run `nurture ARGS` on a pseudo-terminal, typing `answer` at its prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "nurture.cli", *args])
    out = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not answered and b"[y/N]" in out:
            os.write(fd, answer)
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_forget_on_a_terminal_asks_first(db: str, quick_sequence: str, clock: FrozenClock) -> None:
    _people()
    code, out = _on_a_terminal(["subscribers", "forget", "bob@example.com"], b"n\n")
    assert "Erase this person's data for good?" in out and code == 1
    assert subscriber("bob@example.com") is not None
    code, out = _on_a_terminal(["subscribers", "forget", "bob@example.com"], b"y\n")
    assert code == 0 and "forgotten" in out
    assert subscriber("bob@example.com") is None


# --- dispatch says what was deferred ----------------------------------------------------


def test_dispatch_with_the_mail_server_down_says_what_waits_and_until_when(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import reload_runtime

    _people()
    monkeypatch.setenv("NURTURE_MAIL_URL", f"smtp://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    reload_runtime()
    ran = run("dispatch")
    assert ran.code == 0, ran.err
    assert "sent 0" in ran.out
    assert "deferred 2: the mail server did not take them" in ran.out, ran.out
    assert "next try from 2026-03-06 09:01 America/New_York (in 1 min)" in ran.out
    rows = run("deliveries", "list", "--json").json()
    assert {r["next_try"] for r in rows} == {"2026-03-06T14:01:00+00:00"}
    piped = run("deliveries", "list", "--status", "queued").out.splitlines()
    assert "next_try" in piped[0].split("\t") and "error" in piped[0].split("\t")


# --- sequences archive ------------------------------------------------------------------


def test_archive_closes_the_form_and_lets_readers_finish(
    quick_sequence: str, clock: FrozenClock, outbox: list, client: FlaskClient
) -> None:
    _people()
    assert drain() == 2
    token = csrf(client)
    ran = run("sequences", "archive", "quick")
    assert ran.code == 0 and "archived; the form is closed, 2 people in it will receive" in ran.out
    assert run("sequences", "list", "--json").json()[0]["status"] == "archived"
    for path in ("/subscribe/quick", "/embed/quick"):
        page = client.get(path)
        assert page.status_code == 410
        assert "This email series has ended" in page.get_data(as_text=True)
        assert "Test Practice" in page.get_data(as_text=True)
    posted = client.post("/subscribe/quick", data={"email": "new@example.com", "csrf_token": token})
    assert posted.status_code == 410 and subscriber("new@example.com") is None
    added = run("subscribers", "add", "new@example.com", "--sequence", "quick", "--confirmed")
    assert added.code == 1 and "archived" in added.err
    clock.advance(timedelta(minutes=2))
    assert drain() == 2  # readers already in it go on
    assert "already archived" in run("sequences", "archive", "quick").out


def test_archive_stop_ends_everyone_in_it(quick_sequence: str, clock: FrozenClock) -> None:
    _people()
    assert drain() == 2
    clock.advance(timedelta(minutes=2))
    from nurture.delivery.dispatch import dispatch_once

    dispatch_once(lambda ids: None)  # two deliveries claimed, not yet sent
    ran = run("sequences", "archive", "quick", "--stop")
    assert ran.code == 0 and "2 people in it were stopped" in ran.out
    clock.advance(timedelta(minutes=10))
    assert drain() == 0
    with transaction() as s:
        assert set(s.scalars(select(Enrollment.status))) == {EnrollmentStatus.CANCELLED}
        queued = s.scalars(select(Delivery.status).where(Delivery.status == DeliveryStatus.QUEUED))
        assert list(queued) == []


# --- send-test --------------------------------------------------------------------------


def test_send_test_never_touches_the_real_email(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    client: FlaskClient,
) -> None:  # fmt: skip
    from tests.conftest import reload_runtime

    outbox = tmp_path / "outbox"
    monkeypatch.setenv("NURTURE_MAIL_URL", f"file://{outbox}")
    reload_runtime()
    _people()
    assert drain() == 2
    real = sorted(outbox.glob("quick.one.*.eml"))
    assert len(real) == 2
    before = {p: p.read_bytes() for p in real}
    ran = run("send-test", "quick", "one", "--to", "bob@example.com")
    assert ran.code == 0, ran.err
    assert {p: p.read_bytes() for p in real} == before  # no real email overwritten
    tests = sorted(outbox.glob("test.quick.one.*.eml"))
    assert len(tests) == 1
    msg = message_from_bytes(tests[0].read_bytes(), policy=default)
    assert str(msg["Subject"]).startswith("[TEST]") and msg["X-Nurture-Test"] == "yes"
    real_ids = {str(message_from_bytes(b, policy=default)["Message-ID"]) for b in before.values()}
    assert str(msg["Message-ID"]) not in real_ids
    # Its unsubscribe link works as a page but unsubscribes no one.
    link = str(msg["List-Unsubscribe"]).strip("<>").split("https://nurture.test")[1]
    assert client.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with transaction() as s:
        assert set(s.scalars(select(Subscriber.status))) == {"confirmed"}


# --- a confirmation email that could not be sent ----------------------------------------


def test_adding_again_retries_a_confirmation_the_mail_server_refused(
    quick_sequence: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`subscribers add` says "run this again to retry" when the confirmation could not go
    out: running it again sends it, once."""
    from nurture.context import current
    from tests.conftest import reload_runtime

    monkeypatch.setenv("NURTURE_MAIL_URL", f"smtp://127.0.0.1:{free_port()}")  # nobody there
    reload_runtime()
    first = run("subscribers", "add", "ann@example.com", "--sequence", "quick")
    assert first.code == 1 and "run this again to retry" in first.err, first.err
    assert "added to quick (pending)" in first.out

    monkeypatch.setenv("NURTURE_MAIL_URL", "memory://")
    reload_runtime()
    outbox = current().mail().outbox  # type: ignore[attr-defined]
    again = run("subscribers", "add", "ann@example.com", "--sequence", "quick")
    assert again.code == 0, again.err
    assert "confirmation email sent" in again.out
    assert [m["To"] for m in outbox] == ["ann@example.com"]

    third = run("subscribers", "add", "ann@example.com", "--sequence", "quick")
    assert third.code == 0 and "nothing changed" in third.out
    assert len(outbox) == 1
