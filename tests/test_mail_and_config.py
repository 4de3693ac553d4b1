"""One test over every mail backend, and configuration errors that name their variable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from nurture.config import load_settings
from nurture.content.render import RenderedEmail
from nurture.errors import ConfigError
from nurture.mail.backends import MemoryBackend, backend_from_url
from nurture.mail.message import Envelope, build_message
from tests.support import SMTPServer


def _message(name: str = "Ann") -> EmailMessage:
    env = Envelope(
        from_name="Practice",
        from_email="hello@example.org",
        to_email="ann@example.com",
        to_name=name,
        reply_to="hello@example.org",
        list_id="quick.example.org",
        unsubscribe_url="https://nurture.test/unsubscribe/" + "x" * 120,
        unsubscribe_mailto=None,
        message_id="<quick.one.abc@example.org>",
    )
    return build_message(env, RenderedEmail("Hello", "text body", "<p>html body</p>"))


@pytest.fixture(params=["memory", "file", "smtp"])
def sent(
    request: pytest.FixtureRequest, tmp_path: Path, settings_env: dict[str, str]
) -> Iterator[Callable[[EmailMessage], EmailMessage]]:
    kind = request.param
    if kind == "smtp":
        with SMTPServer() as server:

            def via_smtp(msg: EmailMessage) -> EmailMessage:
                with backend_from_url(server.url) as b:
                    b.send(msg)
                return server.messages[-1]

            yield via_smtp
        return

    def local(msg: EmailMessage) -> EmailMessage:
        url = "memory://" if kind == "memory" else f"file://{tmp_path}/out"
        backend = backend_from_url(url)
        with backend as b:
            b.send(msg)
        if isinstance(backend, MemoryBackend):
            return backend.outbox[-1]
        eml = next((tmp_path / "out").glob("*.eml"))
        assert eml.with_suffix(".html").exists()  # beside it, to open in a browser
        return message_from_bytes(eml.read_bytes(), policy=default)  # type: ignore[return-value]

    yield local


def test_every_backend_delivers_the_same_message(
    sent: Callable[[EmailMessage], EmailMessage],
) -> None:
    got = sent(_message())
    assert got["Subject"] == "Hello"
    assert got["Message-ID"] == "<quick.one.abc@example.org>"
    assert got["List-Unsubscribe"] == "<https://nurture.test/unsubscribe/" + "x" * 120 + ">"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got["List-Id"] == "<quick.example.org>"
    assert got.get_content_type() == "multipart/alternative"
    assert got.get_body(("plain",)).get_content().strip() == "text body"  # type: ignore[union-attr]


def test_a_line_break_in_a_name_injects_no_header(settings_env: dict[str, str]) -> None:
    msg = _message("Ann\r\nBcc: victim@example.com")
    raw = msg.as_bytes()
    assert b"\nBcc:" not in raw
    assert message_from_bytes(raw)["Bcc"] is None


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("NURTURE_MAIL_URL", "carrier-pigeon://x", "NURTURE_MAIL_URL"),
        ("NURTURE_DATABASE_URL", "mysql://x/y", "NURTURE_DATABASE_URL"),
        ("NURTURE_BROKER_URL", "kafka://x", "NURTURE_BROKER_URL"),
        ("NURTURE_BASE_URL", "localhost:8000", "NURTURE_BASE_URL"),
        ("NURTURE_ENV", "staging", "NURTURE_ENV"),
        ("NURTURE_TIMEZONE", "Mars/Olympus", "NURTURE_TIMEZONE"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], var: str, value: str, says: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(says)
    assert "\n" not in str(err.value)


def test_production_needs_a_secret_and_never_prints_it(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]
) -> None:
    monkeypatch.setenv("NURTURE_ENV", "production")
    monkeypatch.delenv("NURTURE_SECRET_KEY")
    with pytest.raises(ConfigError, match="NURTURE_SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("NURTURE_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="too short"):
        load_settings()
    monkeypatch.setenv("NURTURE_SECRET_KEY", "s3cret-value-0123456789")
    settings = load_settings()
    assert "s3cret-value" not in repr(settings)
    monkeypatch.setenv("NURTURE_SECRET_KEY", "")
    with pytest.raises(ConfigError, match="required"):
        load_settings()


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]) -> None:
    for var in list(settings_env):
        monkeypatch.delenv(var)
    s = load_settings()
    assert s.database_url == "sqlite:///nurture.db"
    assert s.broker_url == "sqla+sqlite:///nurture-broker.db"
    assert s.mail_url == "file://./outbox"
    assert (s.track_clicks, s.track_opens) == (False, False)
