from __future__ import annotations

import base64
import re
import shutil
import subprocess
from email import message_from_bytes
from pathlib import Path

import dkim
import pytest

from nurture.content.render import RenderedEmail
from nurture.errors import ConfigError
from nurture.mail.dkim import signature
from nurture.mail.message import READ_POLICY, Envelope, build_message, wire_bytes
from tests.conftest import IN_CI, reload_runtime

ENVELOPE = Envelope(
    from_name="ConnectWell Therapy",
    from_email="hello@example.org",
    to_email="ann@example.com",
    to_name="Ann\nBcc: evil@example.com",
    reply_to="hello@example.org",
    list_id="partner-refuses-therapy.example.org",
    unsubscribe_url="https://example.org/unsubscribe/" + "t" * 120,
    unsubscribe_mailto=None,
    message_id="<partner-refuses-therapy.welcome.abc@example.org>",
)
RENDERED = RenderedEmail(
    subject="You are not the only one asking this",
    text="Hi Ann,\n\nA line with \u201cquotes\u201d and an accent: caf\u00e9.\n" + "x " * 80,
    html="<p>Hi Ann, caf\u00e9</p>",
)


@pytest.fixture
def dkim_key(tmp_path: Path, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    if not shutil.which("openssl"):
        if IN_CI:
            pytest.fail("openssl is needed to make a test DKIM key")
        pytest.skip("openssl is missing")
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    monkeypatch.setenv("NURTURE_DKIM_SELECTOR", "nurture")
    monkeypatch.setenv("NURTURE_DKIM_PRIVATE_KEY", str(key))
    reload_runtime()
    return base64.b64encode(der).decode()


def _dns(public_key: str):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nurture._domainkey.example.org."
        return f"v=DKIM1; k=rsa; p={public_key}".encode()

    return lookup


def test_signed_message_verifies(dkim_key: str) -> None:
    msg = build_message(ENVELOPE, RENDERED)
    raw = wire_bytes(msg)
    assert raw.startswith(b"DKIM-Signature:") or b"\r\nDKIM-Signature:" in raw
    assert dkim.verify(raw, dnsfunc=_dns(dkim_key))
    signed = re.search(rb"h=([^;]+);", raw)
    assert signed and b"list-unsubscribe" in signed.group(1).lower()
    # Parsed and written out again (as a relay or the file outbox would), it still verifies ...
    parsed = message_from_bytes(raw, policy=READ_POLICY)
    again = parsed.as_bytes(policy=READ_POLICY.clone(linesep="\r\n"))
    assert dkim.verify(again, dnsfunc=_dns(dkim_key))
    # ... and a changed unsubscribe target does not.
    tampered = raw.replace(b"/unsubscribe/ttt", b"/unsubscribe/xxx")
    assert not dkim.verify(tampered, dnsfunc=_dns(dkim_key))


def test_test_sends_are_signed_too(dkim_key: str) -> None:
    msg = build_message(ENVELOPE, RENDERED, test=True)
    assert msg["X-Nurture-Test"] == "yes" and msg["Subject"].startswith("[TEST] ")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert dkim.verify(raw, dnsfunc=_dns(dkim_key))


def test_no_signature_without_configuration(settings_env: dict[str, str]) -> None:
    assert "DKIM-Signature" not in build_message(ENVELOPE, RENDERED)


def test_unreadable_key_is_one_clear_error(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NURTURE_DKIM_SELECTOR", "nurture")
    monkeypatch.setenv("NURTURE_DKIM_PRIVATE_KEY", str(tmp_path / "missing.pem"))
    reload_runtime()
    with pytest.raises(ConfigError, match="NURTURE_DKIM_PRIVATE_KEY"):
        build_message(ENVELOPE, RENDERED)


def test_signature_is_over_plain_bytes(dkim_key: str, tmp_path: Path) -> None:
    raw = b"From: hello@example.org\r\nTo: ann@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"
    value = signature(raw, "nurture", "example.org", (tmp_path / "dkim.pem").read_bytes())
    assert "\r" not in value and "\n" not in value
    assert dkim.verify(b"DKIM-Signature: " + value.encode() + b"\r\n" + raw, dnsfunc=_dns(dkim_key))
    # Only the headers present are listed: an absent one would be signed as absent.
    signed = re.search(r"h=([^;]+);", value)
    assert signed and signed.group(1).replace(" ", "").lower() == "from:to:subject"
