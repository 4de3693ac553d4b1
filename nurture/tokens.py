"""Signed tokens for links in emails and pages. One salt per purpose, so a token made for
one thing (say, unsubscribing) can never be replayed as another (confirming).

A token names the row it acts on (a consent, a link) and the person it was made for, by
their public id: a random id of that person alone (Subscriber.public_id), so a number that
another row gets later matches nobody. Links in emails sent before tokens carried it name a
bare number; such a token acts only on a row that already existed when it was signed
(`Claims.names`), which no later row can have. Reading a token is one function, `read`.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin

from nurture.clock import now
from nurture.context import current
from nurture.errors import NurtureError

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
LINK = "link"
FORM = "form"  # the stateless CSRF token of the signup form (works inside a cross-site iframe)
BREAK = "break"  # "take a break for two weeks", in every email's footer

# A confirmation link should not work forever; unsubscribe links must keep working for
# as long as the email might be read (RFC 8058 asks for no expiry in practice).
MAX_AGE = {CONFIRM: 7 * 86400, UNSUBSCRIBE: None, LINK: None, FORM: 12 * 3600, BREAK: None}
# Timestamps are whole seconds; a row made in the second a token was signed still counts.
_SLACK = timedelta(seconds=1)
# The key of the row id each purpose's token names ("p" is the person's public id).
_REF = {CONFIRM: "c", UNSUBSCRIBE: "s", LINK: "l"}
NO_ONE = "0" * 32  # the public id in a test email's links: it names nobody


class BadToken(NurtureError):
    pass


class ExpiredToken(BadToken):
    pass


class _ClockSigner(TimestampSigner):
    # Token ages follow the one clock (nurture.clock), so tests and the demo can expire them.
    def get_timestamp(self) -> int:
        return int(now().timestamp())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # The signing key (the newest secret's) is derived once per signer, not per token.
        if secret_key is not None:
            return super().derive_key(secret_key)
        key: bytes | None = self.__dict__.get("_key")
        if key is None:
            key = self.__dict__["_key"] = super().derive_key()
        return key


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return _serializer_for(current().settings.secret, purpose)


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe serializer, minus its try at compressing each payload: ours
    are a few ids, which never come out shorter, and the try (zlib's set-up) cost more than
    the rest of signing. Reading is unchanged, so a compressed token still reads."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        # One signer for this serializer's own salt, kept (a signer holds no state that
        # signing changes): building one was a fifth of a token's cost.
        if salt is not None and salt != self.salt:
            return super().make_signer(salt)
        signer: Signer | None = self.__dict__.get("_signer")
        if signer is None:
            signer = self.__dict__["_signer"] = super().make_signer()
        return signer


@functools.lru_cache(maxsize=64)
def _serializer_for(secret: str, purpose: str) -> URLSafeTimedSerializer:
    # Built once per key and purpose: each message signs two tokens, and building the
    # serializer was a fifth of a token's cost.
    return _Serializer(secret, salt=f"nurture.{purpose}", signer=_ClockSigner)


def make(purpose: str, payload: dict[str, Any]) -> str:
    return _serializer(purpose).dumps(payload)


def confirm_token(consent_id: int, public_id: str) -> str:
    return make(CONFIRM, {"c": consent_id, "p": public_id})


def unsubscribe_token(public_id: str) -> str:
    return make(UNSUBSCRIBE, {"p": public_id})


def break_token(public_id: str) -> str:
    return make(BREAK, {"p": public_id})


def link_token(link_id: int, public_id: str) -> str:
    return make(LINK, {"l": link_id, "p": public_id})


@dataclass(frozen=True)
class Claims:
    """What a token says: the row it names, the person it was made for, when it was signed."""

    ref: int | None
    person: str | None
    signed_at: datetime
    payload: dict[str, Any]

    def names(self, public_id: str, created_at: datetime) -> bool:
        """Whether this token was made for the row of this person (public id) made then."""
        if self.person is not None:
            return hmac.compare_digest(self.person, public_id)
        return created_at <= self.signed_at + _SLACK


def read(purpose: str, token: str) -> Claims:
    """The claims of a token signed for `purpose`. Raises BadToken (ExpiredToken) when it is
    tampered, expired, or does not name what a token of its purpose names."""
    try:
        data, signed = _serializer(purpose).loads(
            token, max_age=MAX_AGE[purpose], return_timestamp=True
        )
    except SignatureExpired:
        raise ExpiredToken("this link has expired") from None
    except BadSignature:
        raise BadToken("this link is not valid") from None
    data = data if isinstance(data, dict) else {}
    ref, person = data.get(_REF.get(purpose, "")), data.get("p")
    ref = ref if isinstance(ref, int) and not isinstance(ref, bool) else None
    person = person if isinstance(person, str) else None
    # A confirmation and a link name their row; an unsubscribe names the person (or, in
    # emails sent before tokens named people, their row); a break names the person; a form
    # names its sequence.
    complete = {
        CONFIRM: ref is not None,
        LINK: ref is not None,
        UNSUBSCRIBE: ref is not None or person is not None,
        BREAK: person is not None,
        FORM: isinstance(data.get("q"), str),
    }
    if not complete[purpose]:
        raise BadToken("this link is not valid")
    return Claims(ref, person, signed.astimezone(UTC), data)
