"""Tokens are signed without itsdangerous's try at compressing (tokens.py _Serializer): the
links in emails sent before still read, and ours read with the stock serializer."""

from __future__ import annotations

import secrets

from itsdangerous import URLSafeTimedSerializer

from nurture import tokens
from nurture.context import current


def _stock(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current().settings.secret, salt=f"nurture.{purpose}", signer=tokens._ClockSigner
    )


def test_tokens_signed_before_still_read(settings_env: dict[str, str]) -> None:
    public_id = "ab" * 16
    # What the stock serializer made, a compressed payload among them ("." first).
    plain = _stock(tokens.UNSUBSCRIBE).dumps({"p": public_id})
    squeezed = _stock(tokens.BREAK).dumps({"p": "a" * 200})
    assert squeezed.startswith(".")
    assert tokens.read(tokens.UNSUBSCRIBE, plain).person == public_id
    assert tokens.read(tokens.BREAK, squeezed).person == "a" * 200


def test_ours_read_with_the_stock_serializer(settings_env: dict[str, str]) -> None:
    public_id = secrets.token_hex(16)  # as random as a subscriber's public id
    ours = tokens.unsubscribe_token(public_id)
    assert _stock(tokens.UNSUBSCRIBE).loads(ours) == {"p": public_id}
    assert not ours.startswith(".")  # never compressed
