"""The operator's commands on one person's sequences (issue 21): `subscribers remove` takes
someone out of one sequence and leaves the rest; `subscribers move` moves them to another
with a consent of its own; `subscribers resend-confirmation` asks again within the daily
limit; `subscribers consent` shows the proof. Each records what it did and names what is
wrong with an unknown address or sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.models import Consent, Enrollment
from tests.cli_helpers import FIXTURES, drain, dump, run
from tests.web_support import link_in, post_signup


def apply_copy(tmp_path: Path, slug: str) -> str:
    """The quick sequence again under another slug (and name), applied."""
    folder = tmp_path / "seqs" / slug
    folder.mkdir(parents=True)
    for f in (FIXTURES / "sequences" / "quick").iterdir():
        text = f.read_text()
        if f.name == "sequence.yaml":
            text = text.replace("slug: quick", f"slug: {slug}").replace(
                "name: Quick test sequence", f"name: The {slug} series"
            )
        (folder / f.name).write_text(text)
    assert run("sequences", "apply", str(folder)).code == 0
    return slug


@pytest.fixture
def other(quick_sequence: str, tmp_path: Path) -> str:
    return apply_copy(tmp_path, "other")


def _places(email: str) -> dict[str, str]:
    rows = run("subscribers", "list", "--json").json()
    return {r["sequence"]: r["enrollment"] for r in rows if r["email"] == email}


def _kinds(email: str) -> list[tuple[str, str | None, str]]:
    story = run("subscribers", "show", email, "--json").json()
    return [(e["kind"], e["sequence"], e["detail"]) for e in story["events"]]


def _add(email: str, slug: str, *flags: str) -> None:
    ran = run("subscribers", "add", email, "--sequence", slug, *flags)
    assert ran.code == 0, ran.err


# --- remove -----------------------------------------------------------------------------


def test_remove_ends_one_sequence_and_leaves_the_others(
    other: str, clock: FrozenClock, outbox: list, tmp_path: Path
) -> None:
    _add("ann@example.com", "quick", "--confirmed")
    _add("ann@example.com", "other", "--confirmed")
    assert drain() == 2  # step one of each
    ran = run("subscribers", "remove", "ann@example.com", "--sequence", "quick")
    assert (ran.code, ran.out) == (0, "removed from quick; their other sequences go on\n")
    assert _places("ann@example.com") == {"quick": "cancelled", "other": "active"}
    assert run("subscribers", "show", "ann@example.com", "--json").json()["status"] == "confirmed"
    outbox.clear()
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        drain()
    assert {m["Subject"] for m in outbox} == {"Step two", "Step three", "Step four"}
    deliveries = run("subscribers", "show", "ann@example.com", "--json").json()["deliveries"]
    assert {d["sequence"] for d in deliveries if d["step"] != "one"} == {"other"}
    assert ("removed", "quick", "by cli") in _kinds("ann@example.com")
    again = run("subscribers", "remove", "ann@example.com", "--sequence", "quick")
    assert again.out == "nothing to remove: their place in quick already ended (cancelled)\n"
    # An old list imported again does not put them back; an operator's add does, with the
    # steps they have not had.
    path = tmp_path / "old.csv"
    path.write_text("email\nann@example.com\n")
    run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed")
    assert _places("ann@example.com")["quick"] == "cancelled"
    _add("ann@example.com", "quick", "--confirmed")
    assert _places("ann@example.com")["quick"] == "active"
    outbox.clear()
    clock.advance(timedelta(minutes=1))
    assert drain() == 1 and outbox[0]["Subject"] == "Step two"  # step one never twice


def test_remove_cancels_an_email_already_claimed(quick_sequence: str, clock: FrozenClock) -> None:
    from nurture.delivery.dispatch import dispatch_once

    _add("ann@example.com", "quick", "--confirmed")
    claimed: list[int] = []
    dispatch_once(claimed.extend)  # claimed, not sent: a worker has it in its queue
    assert claimed
    assert run("subscribers", "remove", "ann@example.com", "--sequence", "quick").code == 0
    with transaction() as s:
        assert s.get_one(Delivery, claimed[0]).status == DeliveryStatus.CANCELLED


def test_remove_errors_name_what_is_wrong(other: str, clock: FrozenClock, db: str) -> None:
    _add("ann@example.com", "quick")
    before = dump(db)
    cases = {
        ("nobody@example.com", "quick"): "Error: no subscriber with that address\n",
        ("ann@example.com", "nope"): "no sequence 'nope'",
        ("ann@example.com", "other"): "Error: that address is not in sequence 'other'\n",
        ("not an address", "quick"): "Error: not a valid email address",
    }
    for (email, slug), words in cases.items():
        ran = run("subscribers", "remove", email, "--sequence", slug)
        assert ran.code == 1 and words in ran.err, (email, slug, ran.err)
    assert run("subscribers", "remove", "ann@example.com").code == 2
    assert dump(db) == before


# --- move -------------------------------------------------------------------------------


def test_move_ends_the_first_and_starts_the_second_in_their_window(
    other: str, clock: FrozenClock, outbox: list
) -> None:
    _add("ann@example.com", "quick", "--confirmed")
    assert drain() == 1
    clock.set(datetime(2026, 3, 7, 6, 28, tzinfo=UTC))  # 01:28 in New York
    ran = run("subscribers", "move", "ann@example.com", "--from", "quick", "--to", "other")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("moved from quick to other; its first email goes Sat 2026-03-07 ")
    assert _places("ann@example.com") == {"quick": "cancelled", "other": "active"}
    assert drain() == 0  # nobody is woken by an operator's move
    clock.set(datetime(2026, 3, 7, 14, 0, tzinfo=UTC))  # 09:00 in New York
    outbox.clear()
    assert drain() == 1 and outbox[0]["Subject"] == "Step one"
    assert ("moved", "quick", "to other by cli") in _kinds("ann@example.com")
    with transaction() as s:
        sub = get_subscriber(s, "ann@example.com")
        moved = [c for c in sub.consents if c.consent_version == "move-1"]
        assert len(moved) == 1 and moved[0].confirmed_at is not None
        assert "“Quick test sequence” to “The other series”" in moved[0].consent_text


def test_someone_not_yet_confirmed_is_moved_as_pending_and_asked_nothing(
    other: str, clock: FrozenClock, outbox: list
) -> None:
    _add("ann@example.com", "quick")  # a confirmation email went
    outbox.clear()
    ran = run("subscribers", "move", "ann@example.com", "--from", "quick", "--to", "other")
    assert "they have not confirmed yet, so nothing is sent until they do" in ran.out
    assert _places("ann@example.com") == {"quick": "cancelled", "other": "pending"}
    assert drain() == 0 and outbox == []
    sent = run("subscribers", "resend-confirmation", "ann@example.com", "--sequence", "other")
    assert sent.code == 0, sent.err
    assert client_confirms(outbox[-1])
    assert _places("ann@example.com") == {"quick": "cancelled", "other": "active"}


def client_confirms(msg: object) -> bool:
    from nurture.subscribers.confirmation import confirm_by_token

    state, _ = confirm_by_token(link_in(msg, "confirm").rsplit("/", 1)[1])  # type: ignore[arg-type]
    return str(state) == "confirmed"


def test_move_refuses_what_it_must_not_do(
    other: str, clock: FrozenClock, tmp_path: Path, db: str
) -> None:
    apply_copy(tmp_path, "third")
    for who in ("ann", "bob", "cy", "dee"):
        _add(f"{who}@example.com", "quick", "--confirmed")
    _add("dee@example.com", "other", "--confirmed")
    run("subscribers", "unsubscribe", "bob@example.com")
    run("subscribers", "booked", "cy@example.com")
    assert run("sequences", "archive", "third").code == 0
    before = dump(db)
    cases = [
        (("ann", "quick", "quick"), "--from and --to name the same sequence"),
        (("ann", "other", "quick"), "that address is not in sequence 'other'"),
        (("ann", "quick", "nope"), "no sequence 'nope'"),
        (("ann", "quick", "third"), "archived"),
        (("bob", "quick", "other"), "skipped: this person is unsubscribed"),
        (("cy", "quick", "other"), "booked a consult"),
        (("dee", "quick", "other"), "already in 'other' (active): nothing moved"),
        (("zed", "quick", "other"), "no subscriber with that address"),
    ]
    for (who, source, target), words in cases:
        ran = run("subscribers", "move", f"{who}@example.com", "--from", source, "--to", target)
        assert ran.code == 1 and words in ran.err, (who, source, target, ran.err)
        assert ran.err.count("\n") == 1
    assert dump(db) == before


# --- resend-confirmation ----------------------------------------------------------------


def test_resend_confirmation_asks_again_within_the_daily_limit(
    quick_sequence: str, clock: FrozenClock, outbox: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    from tests.conftest import reload_runtime

    reload_runtime()
    _add("ann@example.com", "quick")  # the first confirmation email (1 of 3 today)
    for _ in range(2):
        clock.advance(timedelta(minutes=30))
        ran = run("subscribers", "resend-confirmation", "ann@example.com")
        assert (
            ran.out == "confirmation email sent for quick: the sequence starts when they confirm\n"
        )
    assert len(outbox) == 3
    clock.advance(timedelta(minutes=30))
    ran = run("subscribers", "resend-confirmation", "ann@example.com", "--sequence", "quick")
    assert ran.code == 1 and len(outbox) == 3
    # The first went at 09:00 New York time: a fourth may go a day after it.
    assert ran.err == (
        "Error: not sent: this address already had 3 confirmation emails in the last 24 hours, "
        "the most it gets; another may go from Sat 2026-03-07 09:00 (America/New_York time)\n"
    )
    clock.set(datetime(2026, 3, 7, 14, 1, tzinfo=UTC))
    assert run("subscribers", "resend-confirmation", "ann@example.com").code == 0
    kinds = [k for k, _, _ in _kinds("ann@example.com")]
    assert kinds.count("confirmation_sent") == 4


def test_resend_confirmation_errors(other: str, clock: FrozenClock, outbox: list, db: str) -> None:
    _add("ann@example.com", "quick", "--confirmed")
    _add("bob@example.com", "quick")
    _add("bob@example.com", "other")
    _add("cy@example.com", "quick")
    run("subscribers", "unsubscribe", "cy@example.com")
    outbox.clear()
    cases = [
        (("ann@example.com",), "nothing to confirm: no sequence of theirs waits for their yes"),
        (("ann@example.com", "--sequence", "quick"), "their place in 'quick' is active"),
        (("ann@example.com", "--sequence", "other"), "not in sequence 'other'"),
        (("bob@example.com",), "waiting for their yes in other, quick: say which with --sequence"),
        (("bob@example.com", "--sequence", "nope"), "no sequence 'nope'"),
        (("cy@example.com",), "this person is unsubscribed; only they can come back"),
        (("zed@example.com",), "no subscriber with that address"),
    ]
    for args, words in cases:
        ran = run("subscribers", "resend-confirmation", *args)
        assert ran.code == 1 and words in ran.err, (args, ran.err)
    assert outbox == []


# --- consent ----------------------------------------------------------------------------


def test_consent_shows_when_the_words_and_how_they_came(
    other: str, clock: FrozenClock, client, outbox: list, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    page = "https://blog.example.org/when-your-partner-refuses"
    assert post_signup(client, "ann@example.com", article=f"{page}?utm=x").status_code == 200
    clock.advance(timedelta(minutes=5))
    assert client.post(link_in(outbox[-1], "confirm")).status_code == 200
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.com\n")
    assert run("subscribers", "import", str(path), "--sequence", "other").code == 0
    proof = run("subscribers", "consent", "Ann@example.com", "--json").json()
    assert proof["email"] == "ann@example.com"
    form, imported = proof["consents"]
    assert (form["sequence"], form["how"], form["page"]) == ("quick", "form", page)
    assert form["text"].startswith("Send me the free email series “Quick test sequence”")
    assert form["given_at"] == "2026-03-06T14:00:00+00:00"
    assert form["confirmed_at"] == "2026-03-06T14:05:00+00:00"
    assert form["version"] and form["client_recorded"] is True
    assert (imported["sequence"], imported["how"], imported["confirmed_at"]) == (
        "other",
        "import",
        None,
    )
    assert imported["text"] == "Imported by the operator, who holds this person's consent."
    text = run("subscribers", "consent", "ann@example.com").out
    assert f"quick: came by the signup form on {page}" in text
    assert "other: came by an import by the operator" in text
    assert "confirmed  not confirmed" in text
    assert form["text"] in text
    missing = run("subscribers", "consent", "zed@example.com")
    assert (missing.code, missing.err) == (1, "Error: no subscriber with that address\n")


def test_consent_of_an_operators_add(quick_sequence: str, clock: FrozenClock) -> None:
    _add("ann@example.com", "quick", "--confirmed")
    (c,) = run("subscribers", "consent", "ann@example.com", "--json").json()["consents"]
    assert (c["how"], c["page"], c["client_recorded"]) == ("operator", None, False)
    assert c["confirmed_at"] == c["given_at"]
    with transaction() as s:
        assert len(list(s.scalars(select(Consent)))) == 1
        assert len(list(s.scalars(select(Enrollment)))) == 1
