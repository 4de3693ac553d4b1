"""Discreet mode keeps its word (page, confirmation, every header); footers say how people came."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.sequences.editing import apply_spec
from nurture.sequences.spec import load_folder
from tests.cli_helpers import drain, run, sequence_copy
from tests.web_support import confirm_signup, post_signup

TOPIC = "Partner Refuses Therapy"
SLUG = "partner-help"


def _discreet_sequence(tmp_path: Path, enabled: bool) -> None:
    folder = sequence_copy(tmp_path)
    text = (folder / "sequence.yaml").read_text(encoding="utf-8")
    text = text.replace("slug: quick", f"slug: {SLUG}").replace(
        "name: Quick test sequence", f"name: {TOPIC}"
    )
    text = text.replace("steps:\n", (
        f"discreet: {{enabled: {'true' if enabled else 'false'}, from_name: Weekly Notes, "
        "subjects: {one: Your notes, two: Your notes 2, three: Your notes 3, four: Your notes 4}}\n"
        "steps:\n"
    ))  # fmt: skip
    (folder / "sequence.yaml").write_text(text, encoding="utf-8")
    with transaction() as s:
        apply_spec(s, load_folder(folder))


@pytest.fixture
def web(db: str, clock: FrozenClock, eager_celery: None) -> Any:
    def make(tmp_path: Path, enabled: bool) -> Flask:
        _discreet_sequence(tmp_path, enabled)
        from nurture.web.app import create_app

        return create_app(current(), TESTING=True)

    return make


def _visible(msg: EmailMessage) -> str:
    """Everything an inbox list, a notification or a header view shows."""
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    preview = text.strip().splitlines()[:3]
    hidden = html.split('aria-hidden="true">', 1)[1][:400] if 'aria-hidden="true">' in html else ""
    title = html.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>" in html else ""
    headers = " ".join(f"{k}: {v}" for k, v in msg.items())
    return " ".join([headers, *preview, hidden, title])


def test_page_promises_a_discreet_sender_only_when_on(
    web: Any, tmp_path: Path, outbox: list
) -> None:
    page = web(tmp_path, enabled=False).test_client().get(f"/subscribe/{SLUG}")
    assert "Weekly Notes" not in page.get_data(as_text=True)
    assert "Test Practice" in page.get_data(as_text=True)


def test_nothing_reaching_the_inbox_names_the_topic(
    web: Any, tmp_path: Path, outbox: list, clock: FrozenClock
) -> None:
    app = web(tmp_path, enabled=True)
    client = app.test_client()
    assert "Weekly Notes" in client.get(f"/subscribe/{SLUG}").get_data(as_text=True)
    post_signup(client, "reader@example.com", slug=SLUG, first_name="Sam")
    from tests.web_support import link_in

    client.post(link_in(outbox[-1], "confirm"))
    from datetime import timedelta

    for _ in range(5):
        drain()
        clock.advance(timedelta(minutes=2))
    assert len(outbox) == 5  # the confirmation and four steps
    for msg in outbox:
        seen = _visible(msg).lower()
        for word in ("partner", "therapy", SLUG, "quick", "test practice"):
            assert word not in seen, (word, msg["Subject"])
        assert str(msg["From"]).startswith("Weekly Notes")


def test_footer_says_how_each_person_came(
    app: Flask, outbox: list, clock: FrozenClock, tmp_path: Path
) -> None:
    confirm_signup(app.test_client(), outbox, "form@example.com")
    assert (
        run("subscribers", "add", "op@example.com", "--sequence", "quick", "--confirmed").code == 0
    )
    path = tmp_path / "list.csv"
    path.write_text("email\nlisted@example.com\n", encoding="utf-8")
    assert run("subscribers", "import", str(path), "--sequence", "quick", "--confirmed").code == 0
    outbox.clear()
    drain()
    footers = {
        str(m["To"]): m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for m in outbox
    }
    assert "you signed up on our website" in footers["form@example.com"]
    assert "Test Practice added you" in footers["op@example.com"]
    assert "with your permission" in footers["op@example.com"]
    assert "from their list of people who agreed" in footers["listed@example.com"]
    for who in ("op@example.com", "listed@example.com"):
        assert "signed up" not in footers[who]
