"""DKIM signing of outgoing mail (on when NURTURE_DKIM_SELECTOR and NURTURE_DKIM_PRIVATE_KEY
are both set). The signing domain is the From domain, so the signature aligns for DMARC."""

from __future__ import annotations

import functools
from email.message import EmailMessage
from pathlib import Path

import dkim

from nurture.errors import ConfigError

# The headers a receiver shows or acts on. The List-* headers are signed too, so a relay
# cannot swap the unsubscribe target.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@functools.cache
def _read_key(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        # The path is configuration, not a secret; the key's contents never appear.
        raise ConfigError(
            f"NURTURE_DKIM_PRIVATE_KEY: cannot read {path} ({exc.strerror})"
        ) from None


def sign(msg: EmailMessage, selector: str, key_path: str, domain: str) -> None:
    """Prepend a DKIM-Signature header to msg (relaxed/relaxed, rsa-sha256)."""
    # Sign exactly the bytes SMTP will carry.
    from nurture.mail.message import wire_bytes

    raw = wire_bytes(msg)
    present = {h.lower() for h in msg}
    include = [h for h in SIGNED_HEADERS if h.decode().lower() in present]
    try:
        header = dkim.sign(
            raw,
            selector.encode(),
            domain.encode(),
            _read_key(key_path),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    except dkim.DKIMException as exc:
        raise ConfigError(f"NURTURE_DKIM_PRIVATE_KEY: not a usable signing key ({exc})") from None
    value = header.decode().partition(":")[2]
    # Unfolded to one line: relaxed canonicalisation ignores folding, and a one-line value
    # passes through the email library's header handling unchanged.
    msg["DKIM-Signature"] = " ".join(value.split())
