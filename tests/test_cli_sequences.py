"""`nurture sequences ...`: apply (with the live-edit rules and --dry-run), list, show,
pause and resume."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.models import Step
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment
from tests.cli_helpers import FIXTURES, drain, dump, run, sequence_copy

QUICK_STEPS = """steps:
  - {key: one, delay: "0", subject: "Step one", body: one.md}
  - {key: two, delay: 1m, subject: "Step two", body: two.md}
  - {key: three, delay: 1m, subject: "Step three", body: three.md}
  - {key: four, delay: 1m, subject: "Step four", body: four.md}
"""


def set_steps(folder: Path, steps: str) -> None:
    yaml_path = folder / "sequence.yaml"
    text = yaml_path.read_text()
    yaml_path.write_text(text[: text.index("steps:")] + steps)


def subjects_for(outbox: list, email: str) -> list[str]:
    return [m["Subject"] for m in outbox if m["To"] == email]


@pytest.fixture
def live(db: str, clock: FrozenClock, tmp_path: Path) -> Path:
    """The quick sequence, live: ann has had steps one and two, bob only step one."""
    folder = sequence_copy(tmp_path)
    assert run("sequences", "apply", str(folder)).code == 0
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, "quick"), confirmed=True)
    assert drain() == 1
    clock.advance(timedelta(minutes=1))
    with transaction() as s:
        add_subscriber(s, "bob@example.com", get_sequence(s, "quick"), confirmed=True)
    assert drain() == 2  # ann's two, bob's one
    return folder


def finish(clock: FrozenClock) -> None:
    for _ in range(10):
        clock.advance(timedelta(minutes=1))
        drain()


def enrollment(email: str) -> Enrollment:
    with transaction() as s:
        sub = get_subscriber(s, email)
        e = s.scalar(select(Enrollment).where(Enrollment.subscriber_id == sub.id))
        assert e is not None
        s.expunge(e)
        return e


def step_id(key: str) -> int:
    with transaction() as s:
        found = s.scalar(select(Step.id).where(Step.key == key))
        assert found is not None
        return found


def test_apply_creates_then_reports_no_change(db: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    first = run("sequences", "apply", str(folder))
    assert first.code == 0, first.err
    assert "quick: new sequence with 4 step(s)" in first.out
    again = run("sequences", "apply", str(folder.parent))  # a folder of sequence folders
    assert again.code == 0
    assert "quick: no change" in again.out
    listed = run("sequences", "list", "--json").json()
    assert listed == [
        {
            "slug": "quick",
            "name": "Quick test sequence",
            "status": "active",
            "steps": 4,
            "active": 0,
        }
    ]


def test_step_added_after_position_is_sent_before_is_not(
    live: Path, clock: FrozenClock, outbox: list
) -> None:
    set_steps(
        live,
        QUICK_STEPS.replace(
            "  - {key: two,",
            '  - {key: extra, delay: 1m, subject: "Extra", body: one.md}\n  - {key: two,',
        )
        + '  - {key: five, delay: 1m, subject: "Step five", body: four.md}\n',
    )
    ran = run("sequences", "apply", str(live))
    assert ran.code == 0, ran.err
    assert "1 will receive new step extra" in ran.out  # bob only: ann is past it
    assert "2 will receive new step five" in ran.out
    finish(clock)
    assert subjects_for(outbox, "ann@example.com") == [
        "Step one", "Step two", "Step three", "Step four", "Step five",
    ]  # fmt: skip
    assert subjects_for(outbox, "bob@example.com") == [
        "Step one", "Extra", "Step two", "Step three", "Step four", "Step five",
    ]  # fmt: skip


def test_removed_step_cancels_pending_sends_and_moves_on(
    live: Path, clock: FrozenClock, outbox: list
) -> None:
    set_steps(
        live,
        QUICK_STEPS.replace(
            '  - {key: three, delay: 1m, subject: "Step three", body: three.md}\n', ""
        ),
    )
    ran = run("sequences", "apply", str(live))
    assert "1 pending sends of removed step three are cancelled" in ran.out  # ann's
    ann = enrollment("ann@example.com")
    assert ann.next_step_id == step_id("four")
    finish(clock)
    assert subjects_for(outbox, "ann@example.com") == ["Step one", "Step two", "Step four"]
    assert subjects_for(outbox, "bob@example.com") == ["Step one", "Step two", "Step four"]


def test_removed_step_cancels_a_claimed_delivery(
    live: Path, clock: FrozenClock, outbox: list
) -> None:
    clock.advance(timedelta(minutes=1))
    claimed: list[int] = []
    dispatch_once(claimed.extend)  # claimed, never sent: ann's three and bob's two
    assert len(claimed) == 2
    set_steps(
        live,
        QUICK_STEPS.replace(
            '  - {key: three, delay: 1m, subject: "Step three", body: three.md}\n', ""
        ),
    )
    ran = run("sequences", "apply", str(live))
    assert "1 pending sends of removed step three are cancelled" in ran.out
    with transaction() as s:
        statuses = {
            d.step.key: d.status
            for d in s.scalars(select(Delivery).where(Delivery.id.in_(claimed)))
        }
    assert statuses == {"three": DeliveryStatus.CANCELLED, "two": DeliveryStatus.QUEUED}
    assert enrollment("ann@example.com").next_step_id == step_id("four")
    clock.advance(timedelta(minutes=10))  # leases run out: bob's two goes out on reclaim
    finish(clock)
    assert subjects_for(outbox, "ann@example.com") == ["Step one", "Step two", "Step four"]
    assert subjects_for(outbox, "bob@example.com") == ["Step one", "Step two", "Step four"]


def test_changed_delay_retimes_only_unclaimed_sends(live: Path, clock: FrozenClock) -> None:
    bob_before = enrollment("bob@example.com")
    ann_before = enrollment("ann@example.com")
    set_steps(live, QUICK_STEPS.replace("{key: two, delay: 1m", "{key: two, delay: 2d"))
    ran = run("sequences", "apply", str(live))
    assert "step two delay 1m -> 2d: 1 unclaimed sends re-timed" in ran.out
    bob = enrollment("bob@example.com")
    assert bob_before.last_sent_at is not None
    # Two days after the last send, then the window (09:00 New York, 14:00 UTC in March).
    assert bob.next_due_at == bob_before.last_sent_at + timedelta(days=2)
    assert bob.next_step_id == bob_before.next_step_id
    ann = enrollment("ann@example.com")
    assert ann.next_due_at == ann_before.next_due_at  # her next step's delay did not change


def test_renamed_key_is_a_remove_plus_an_add(live: Path, clock: FrozenClock, outbox: list) -> None:
    set_steps(
        live, QUICK_STEPS.replace("{key: two,", "{key: two-b,").replace('"Step two"', '"Step 2b"')
    )
    ran = run("sequences", "apply", str(live))
    assert "1 will receive new step two-b" in ran.out  # bob; ann had "two" already
    assert "1 pending sends of removed step two are cancelled" in ran.out
    finish(clock)
    assert subjects_for(outbox, "ann@example.com") == [
        "Step one",
        "Step two",
        "Step three",
        "Step four",
    ]
    assert subjects_for(outbox, "bob@example.com") == [
        "Step one",
        "Step 2b",
        "Step three",
        "Step four",
    ]


def test_dry_run_prints_the_plan_and_changes_nothing(live: Path, db: str) -> None:
    set_steps(
        live,
        QUICK_STEPS.replace(
            '  - {key: three, delay: 1m, subject: "Step three", body: three.md}\n', ""
        ).replace("{key: two, delay: 1m", "{key: two, delay: 3d")
        + '  - {key: five, delay: 1m, subject: "Step five", body: four.md}\n',
    )
    before = dump(db)
    ran = run("sequences", "apply", "--dry-run", str(live))
    assert ran.code == 0, ran.err
    assert "2 will receive new step five" in ran.out
    assert "1 pending sends of removed step three are cancelled" in ran.out
    assert "1 unclaimed sends re-timed" in ran.out
    assert "dry run: nothing was changed" in ran.out
    assert dump(db) == before
    plan = run("sequences", "apply", "--dry-run", "--json", str(live)).json()
    assert plan[0]["receivers"] == {"five": 2} and plan[0]["cancelled"] == {"three": 1}
    assert dump(db) == before


def test_removing_the_last_step_completes_those_waiting_for_it(
    live: Path, clock: FrozenClock
) -> None:
    set_steps(live, QUICK_STEPS.split("  - {key: three")[0])
    ran = run("sequences", "apply", str(live))
    assert "1 enrollment(s) have nothing left and complete" in ran.out  # ann
    assert enrollment("ann@example.com").status == "completed"
    assert enrollment("bob@example.com").next_step_id == step_id("two")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace("name: Quick", "name: [Quick"),
            "sequence.yaml:4: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence started at line 3)",
        ),
        (
            lambda t: t.replace("timezone:", "colour: red\ntimezone:"),
            r"sequence.yaml:8: unknown key 'colour'",
        ),
        (
            lambda t: t.replace("{key: three,", "{key: two,"),
            r"sequence.yaml:13: step 3: key: duplicate step key 'two'",
        ),
        (
            lambda t: t.replace("{key: two, delay: 1m", "{key: two, delay: 5"),
            r"sequence.yaml:12: step 2 (two): delay: bad delay 5: add a unit",
        ),
        (
            lambda t: t.replace("body: four.md", "body: missing.md"),
            r"sequence.yaml:14: step 4 (four): body: no file 'missing.md'",
        ),
        (
            lambda t: t.replace(
                "reply_to: hello@example.org",
                "reply_to: hello@example.org\nreply_to: x@example.org",
            ),
            r"sequence.yaml:6: duplicate key 'reply_to'",
        ),
    ],
    ids=[
        "bad-yaml",
        "unknown-field",
        "duplicate-step-key",
        "bad-delay",
        "missing-body",
        "duplicate-yaml-key",
    ],
)
def test_invalid_files_are_refused_with_file_and_line(
    db: str, tmp_path: Path, edit, expected: str
) -> None:  # type: ignore[no-untyped-def]
    good = sequence_copy(tmp_path, "quick")
    bad = tmp_path / "seqs" / "zz-bad"
    shutil.copytree(good, bad)
    text = (bad / "sequence.yaml").read_text().replace("slug: quick", "slug: bad")
    (bad / "sequence.yaml").write_text(edit(text))
    before = dump(db)
    ran = run("sequences", "apply", str(tmp_path / "seqs"))
    assert ran.code == 1
    assert expected in ran.err, ran.err
    assert ran.err.count("\n") == 1 and "Traceback" not in ran.err
    assert dump(db) == before  # the good folder beside it was not applied either


def test_subject_template_error_names_its_line(db: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    text = (folder / "sequence.yaml").read_text()
    (folder / "sequence.yaml").write_text(text.replace('"Step two"', '"Step {{ two"'))
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 1
    assert "sequence.yaml:12: step 2 (two): subject: template error" in ran.err


def test_template_error_names_the_body_file_and_line(db: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    (folder / "three.md").write_text("Hello\n\n{% if %}\n")
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 1
    assert "three.md:3: step 3 (three): body: template error" in ran.err


def test_missing_path_and_unknown_slug(db: str, tmp_path: Path) -> None:
    assert run("sequences", "apply", str(tmp_path / "nope")).code == 1
    for cmd in ("show", "pause", "resume"):
        ran = run("sequences", cmd, "nope")
        assert ran.code == 1
        assert ran.err == "Error: no sequence 'nope' (see `nurture sequences list`)\n"
    assert run("sequences", "show").code == 2  # usage error: no slug


def test_show_lists_steps_and_who_waits(quick_sequence: str, clock: FrozenClock) -> None:
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, "quick"), confirmed=True)
    rows = run("sequences", "show", "quick", "--json").json()
    assert [(r["key"], r["delay"], r["waiting"]) for r in rows] == [
        ("one", "0", 1), ("two", "1m", 0), ("three", "1m", 0), ("four", "1m", 0),
    ]  # fmt: skip
    text = run("sequences", "show", "quick", terminal=True)
    assert "Quick test sequence [active]" in text.out and "Step one" in text.out


def test_pause_holds_and_resume_retimes_into_the_next_window(
    quick_sequence: str, clock: FrozenClock, outbox: list
) -> None:
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, "quick"), confirmed=True)
    assert drain() == 1
    assert run("sequences", "pause", "quick").out.startswith("quick: paused (sends are held")
    clock.advance(timedelta(minutes=5))
    assert drain() == 0
    assert run("sequences", "list", "--json").json()[0]["status"] == "paused"
    clock.set(datetime(2026, 3, 6, 18, 0, tzinfo=UTC))  # 13:00 New York: window closed
    ran = run("sequences", "resume", "quick")
    assert "1 held sends re-timed" in ran.out
    ann = enrollment("ann@example.com")
    assert ann.next_due_at == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # 09:00 next morning
    assert drain() == 0
    clock.set(datetime(2026, 3, 7, 14, 0, tzinfo=UTC))
    assert drain() == 1
    assert len(outbox) == 2


def test_fixture_folder_is_untouched() -> None:
    assert (FIXTURES / "sequences" / "quick" / "sequence.yaml").read_text().count("key:") == 4


def test_two_folders_with_one_slug_are_refused(db: str, tmp_path: Path) -> None:
    first = sequence_copy(tmp_path)
    shutil.copytree(first, tmp_path / "seqs" / "again")
    ran = run("sequences", "apply", str(tmp_path / "seqs"))
    assert ran.code == 1 and "slug 'quick' is also used by" in ran.err
    assert run("sequences", "list", "--json").json() == []


def test_every_mistake_of_every_folder_is_reported_at_once(db: str, tmp_path: Path) -> None:
    # Four mistakes used to take four runs: each run named only the first.
    folder = sequence_copy(tmp_path)
    text = (folder / "sequence.yaml").read_text()
    text = text.replace("{key: two, delay: 1m", "{key: two, dealy: 1m")
    text = text.replace("{key: three, delay: 1m", "{key: three, delay: 5")
    text = text.replace("body: four.md", "body: missing.md")
    text = text.replace("timezone: America/New_York", "timezone: Mars/Olympus")
    (folder / "sequence.yaml").write_text(text)
    (folder / "one.md").write_text("Hello\n\n{{ subscriber.frist_name }}\n")
    other = tmp_path / "seqs" / "other"
    shutil.copytree(FIXTURES / "sequences" / "quick", other)
    other_yaml = (other / "sequence.yaml").read_text().replace("slug: quick", "slug: other")
    other_yaml = other_yaml.replace("{key: three,", "{key: two,")  # a duplicate, then
    (other / "sequence.yaml").write_text(other_yaml.replace("body: four.md", "body: gone.md"))
    before = dump(db)
    ran = run("sequences", "apply", str(tmp_path / "seqs"))
    assert ran.code == 1 and "Traceback" not in ran.err
    lines = ran.err.splitlines()
    assert lines[0] == "Error: 7 mistakes, nothing was changed:", ran.err
    expected = [  # by folder, file and line
        "other/sequence.yaml:13: step 3: key: duplicate step key 'two'",
        "other/sequence.yaml:14: step 4 (four): body: no file 'gone.md'",  # named by its key
        "quick/one.md:3: step 1 (one): body: template error: unknown variable 'frist_name'",
        "quick/sequence.yaml:8: timezone: unknown time zone 'Mars/Olympus'",
        "quick/sequence.yaml:12: step 2 (two): unknown key 'dealy' (did you mean 'delay'?)",
        "quick/sequence.yaml:13: step 3 (three): delay: bad delay 5: add a unit",
        "quick/sequence.yaml:14: step 4 (four): body: no file 'missing.md'",
    ]
    for want, line in zip(expected, lines[1:], strict=True):
        assert want in line, ran.err
    assert "Field required" not in ran.err  # the typo explains the missing delay
    assert dump(db) == before


def test_a_greeting_that_can_read_hi_comma_is_warned_about(db: str, tmp_path: Path) -> None:
    folder = sequence_copy(tmp_path)
    (folder / "two.md").write_text("Hi {{ subscriber.first_name }},\n\nA note.\n")
    (folder / "three.md").write_text('Hi {{ subscriber.first_name | default("there") }},\n')
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 0, ran.err
    warnings = [line for line in ran.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, ran.err
    assert "two.md:1: a reader who gave no name reads a gap here" in warnings[0]
    assert '{{ subscriber.first_name | default("there") }}' in warnings[0]


def test_the_file_spec_extends_the_one_settings_model() -> None:
    from nurture.sequences.settings import SequenceSettings
    from nurture.sequences.spec import SequenceSpec

    assert issubclass(SequenceSpec, SequenceSettings)
    # Declared once: the spec adds only what the database keeps outside `settings`.
    own = set(SequenceSpec.__annotations__) - {"model_config"}
    assert own == {"slug", "name", "steps"}


def test_if_empty_applies_on_a_first_start_only(db: str, tmp_path: Path) -> None:
    # `make run` on every restart used to publish whatever the folder held, edits half made.
    folder = sequence_copy(tmp_path)
    first = run("sequences", "apply", str(folder), "--if-empty")
    assert first.code == 0, first.err
    assert "now live:\n  quick: Quick test sequence [active], 4 steps, 0 people in it" in first.out
    (folder / "two.md").write_text("Half a thought, {{ not finished")
    set_steps(folder, QUICK_STEPS.replace('subject: "Step one"', 'subject: "Step 1, new"'))
    before = dump(db)
    again = run("sequences", "apply", str(folder), "--if-empty")
    assert again.code == 0, again.err
    assert f"sequences already live, so {folder} was not applied again" in again.out
    assert "  quick: Quick test sequence [active], 4 steps" in again.out
    assert dump(db) == before
    assert run("sequences", "apply", str(folder)).code == 1  # without it, the edit is read


def test_a_body_wrapped_at_a_fixed_width_is_warned_about(db: str, tmp_path: Path) -> None:
    # Since a single newline is a line break, a body wrapped at 80 columns would break
    # mid-sentence in every email: apply says where.
    folder = sequence_copy(tmp_path)
    (folder / "two.md").write_text(
        "Hello.\n\nThis paragraph was typed in an editor that wraps its lines at a fixed\n"
        "width, which used to be harmless and now shows in the letter.\n"
    )
    ran = run("sequences", "apply", str(folder))
    assert ran.code == 0, ran.err
    assert "two.md:3: this paragraph looks wrapped at a fixed width" in ran.err, ran.err
