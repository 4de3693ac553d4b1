"""Signed tokens for links in emails and pages. One salt per purpose, so a token made for
one thing (say, unsubscribing) can never be replayed as another (confirming)."""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from nurture.clock import now
from nurture.context import current
from nurture.errors import NurtureError

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
LINK = "link"
FORM = "form"  # the stateless CSRF token of the signup form (works inside a cross-site iframe)

# A confirmation link should not work forever; unsubscribe links must keep working for
# as long as the email might be read (RFC 8058 asks for no expiry in practice).
MAX_AGE = {CONFIRM: 7 * 86400, UNSUBSCRIBE: None, LINK: None, FORM: 12 * 3600}


class BadToken(NurtureError):
    pass


class ExpiredToken(BadToken):
    pass


class _ClockSigner(TimestampSigner):
    # Token ages follow the one clock (nurture.clock), so tests and the demo can expire them.
    def get_timestamp(self) -> int:
        return int(now().timestamp())


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current().settings.secret, salt=f"nurture.{purpose}", signer=_ClockSigner
    )


def make(purpose: str, payload: Any) -> str:
    return _serializer(purpose).dumps(payload)


def read(purpose: str, token: str) -> Any:
    try:
        return _serializer(purpose).loads(token, max_age=MAX_AGE[purpose])
    except SignatureExpired:
        raise ExpiredToken("this link has expired") from None
    except BadSignature:
        raise BadToken("this link is not valid") from None
