"""DKIM signatures over message bytes. This module knows nothing of how a message is built:
the builder (mail/message.py) signs when NURTURE_DKIM_SELECTOR and NURTURE_DKIM_PRIVATE_KEY are
both set, passing the wire bytes, the selector, the From domain (so the signature aligns for
DMARC) and the key."""

from __future__ import annotations

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


def read_key(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        # The path is configuration, not a secret; the key's contents never appear.
        raise ConfigError(
            f"NURTURE_DKIM_PRIVATE_KEY: cannot read {path} ({exc.strerror})"
        ) from None


def signature(raw: bytes, selector: str, domain: str, key: bytes) -> str:
    """The DKIM-Signature header value (relaxed/relaxed, rsa-sha256) for the message bytes
    raw, which must be exactly the bytes SMTP will carry."""
    try:
        # Only headers the message has: a listed absent header would be signed as absent.
        present = {name.decode().lower() for name, _ in dkim.rfc822_parse(raw)[0]}
        include = [h for h in SIGNED_HEADERS if h.decode().lower() in present]
        header = dkim.sign(
            raw,
            selector.encode(),
            domain.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    except dkim.DKIMException as exc:
        raise ConfigError(f"NURTURE_DKIM_PRIVATE_KEY: not a usable signing key ({exc})") from None
    value = header.decode().partition(":")[2]
    # Unfolded to one line: relaxed canonicalisation ignores folding, and a one-line value
    # passes through the email library's header handling unchanged.
    return " ".join(value.split())
