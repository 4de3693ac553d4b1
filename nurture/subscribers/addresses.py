"""A reader's address: how it is normalised, its canonical form, how a person is found by it
(its blind index), and the one place where an address and a name are written, sealed
(nurture/encryption.py). Mail always goes to the exact address a person gave; the canonical
form only tells that two spellings reach the same mailbox (subscribers/suppression.py)."""

from __future__ import annotations

import secrets
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.context import current
from nurture.encryption import DataKeys
from nurture.errors import NotFound, NurtureError
from nurture.subscribers.cleaning import clean
from nurture.subscribers.models import Subscriber, sealed_place

# Providers that ignore dots in the local part: a.lice@gmail.com is alice@gmail.com.
DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(clean(raw).strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NurtureError(f"not a valid email address: {exc}") from None
    # The local part is case-sensitive in theory, in practice nobody relies on it; folding
    # it keeps one person from being two subscribers.
    return result.normalized.lower()


def canonical_address(address: str) -> str:
    """The mailbox a normalised address reaches: without a +tag, and for Gmail without dots
    (a.lice+old@googlemail.com is alice@gmail.com)."""
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS:
        local, domain = local.replace(".", ""), DOTLESS[domain]
    return f"{local}@{domain}"


def email_index(address: str) -> str:
    """The blind index a (normalised) address is found by."""
    return current().data_keys.index(address)


def canonical_index(address: str) -> str:
    return _canonical_index(current().data_keys, address)


def _canonical_index(keys: DataKeys, address: str) -> str:
    return keys.index(canonical_address(address), "canonical")


def person_columns(email: str, first_name: str | None) -> dict[str, Any]:
    """The columns of a new subscriber row for a normalised address and a cleaned name."""
    return seal_person(current().data_keys, secrets.token_hex(16), email, first_name)


def seal_person(
    keys: DataKeys, public_id: str, email: str, first_name: str | None
) -> dict[str, Any]:
    """A subscriber row's public id, blind indexes, and address and name sealed to it."""
    name = keys.seal(first_name, sealed_place(public_id, "first_name")) if first_name else None
    return {
        "public_id": public_id,
        "email_index": keys.index(email),
        "canonical_index": _canonical_index(keys, email),
        "email_sealed": keys.seal(email, sealed_place(public_id, "email")),
        "first_name_sealed": name,
    }


def new_subscriber(email: str, first_name: str | None, timezone: str | None) -> Subscriber:
    return Subscriber(timezone=timezone, **person_columns(email, first_name))


def rename(sub: Subscriber, first_name: str | None) -> None:
    keys = current().data_keys
    sub.first_name_sealed = keys.seal(first_name, sub.place("first_name")) if first_name else None


def find_subscriber(s: Session, email: str) -> Subscriber | None:
    index = email_index(normalize_email(email))
    return s.scalar(select(Subscriber).where(Subscriber.email_index == index))


def get_subscriber(s: Session, email: str) -> Subscriber:
    sub = find_subscriber(s, email)
    if sub is None:
        raise NotFound("no subscriber with that address")
    return sub
