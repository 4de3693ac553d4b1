from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nurture.cli import cli
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.models import Delivery
from nurture.errors import NurtureError
from nurture.sequences.editing import apply_spec
from nurture.sequences.services import get_sequence
from nurture.sequences.spec import load_folder
from nurture.subscribers.enrolling import add_subscriber
from tests.conftest import DEFAULT_SEQUENCE


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=current())


@pytest.fixture
def applied(db: str) -> str:
    with transaction() as s:
        apply_spec(s, load_folder(DEFAULT_SEQUENCE))
    return "partner-refuses-therapy"


def test_preview_prints_headers_and_text(applied: str, tmp_path: Path) -> None:
    html = tmp_path / "welcome.html"
    result = run("preview", applied, "welcome", "--html", str(html))
    assert result.exit_code == 0, result.output
    assert "Subject: You are not the only one asking this" in result.output
    assert "List-Unsubscribe: <https://nurture.test/unsubscribe/" in result.output
    assert "Hi there," in result.output and "Book a free 15-minute consult:" in result.output
    assert "Hi there," in html.read_text() and "https://example.org/book" in html.read_text()


def test_preview_by_number_for_a_subscriber(applied: str) -> None:
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, applied), first_name="Ann")
    result = run("preview", applied, "2", "--email", "ann@example.com", "--text")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Hi Ann,")
    assert "Subject:" not in result.output


def test_preview_errors_are_one_line(applied: str) -> None:
    for args in (("nope", "welcome"), (applied, "nope"), (applied, "1", "--email", "x@y.org")):
        result = run("preview", *args)
        assert isinstance(result.exception, NurtureError), args


def test_send_test_is_marked_and_not_recorded(applied: str, outbox: list) -> None:
    result = run("send-test", applied, "what-therapy-is", "--to", "me@example.org")
    assert result.exit_code == 0, result.output
    (msg,) = outbox
    assert msg["Subject"] == "[TEST] Not a verdict, a pattern"
    assert msg["X-Nurture-Test"] == "yes"
    assert msg["To"] == "me@example.org"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with transaction() as s:
        assert s.query(Delivery).count() == 0


def test_send_test_says_which_file_it_wrote(
    applied: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import reload_runtime

    monkeypatch.setenv("NURTURE_MAIL_URL", f"file://{tmp_path}/outbox")
    reload_runtime()
    result = run("send-test", applied, "welcome", "--to", "me@example.org")
    assert result.exit_code == 0, result.output
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    assert result.output.rstrip().endswith(f"; written to {eml}"), result.output
