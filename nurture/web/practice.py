"""Whose emails these are: the practice named on every page after the form.

A reader who lands on "check your inbox", "one last step" or "stop these emails?" from a
link in an email may not remember where they signed up; the pages say the practice's name
and the sender name the emails carry (a discreet sequence's neutral name, when it has one).
Read-only lookups by token; a token that names no one (a test send's link) gives None.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from nurture import tokens
from nurture.db import reading
from nurture.sequences.models import Sequence
from nurture.sequences.services import open_forms as open_sequences
from nurture.subscribers.confirmation import consent_for
from nurture.subscribers.models import Enrollment
from nurture.subscribers.unsubscribe import subscriber_for


@dataclass(frozen=True)
class Practice:
    name: str  # the practice (sequence.yaml from.name)
    from_name: str  # the sender name in the reader's inbox
    series: str  # the sequence's name
    discreet: bool = False  # the page words itself neutrally (it may be read over a shoulder)


def of_sequence(seq: Sequence) -> Practice:
    cfg = seq.config  # the one typed reading of sequence.yaml (sequences/settings.py)
    return Practice(
        name=cfg.practice, from_name=cfg.inbox_from_name, series=seq.name, discreet=cfg.is_discreet
    )


def for_slug(slug: str) -> Practice | None:
    with reading() as s:
        seq = s.scalar(select(Sequence).where(Sequence.slug == slug))
        return of_sequence(seq) if seq else None


def for_confirm_token(token: str) -> Practice | None:
    with reading() as s:
        try:
            consent = consent_for(s, token)
        except tokens.BadToken:
            return None
        seq = s.get(Sequence, consent.sequence_id) if consent.sequence_id else None
        return of_sequence(seq) if seq else None


def for_unsubscribe_token(token: str) -> Practice | None:
    """The practice of the person's latest sequence (an unsubscribe link names a person,
    not a sequence). Raises tokens.BadToken for a token that is not one of ours."""
    return _for_person(tokens.read(tokens.UNSUBSCRIBE, token))


def for_break_token(token: str) -> Practice | None:
    """As for_unsubscribe_token, for a "take a break" link."""
    return _for_person(tokens.read(tokens.BREAK, token))


def _for_person(claims: tokens.Claims) -> Practice | None:
    with reading() as s:
        sub = subscriber_for(s, claims)
        if sub is None:
            return None
        seq = s.scalar(
            select(Sequence)
            .join(Enrollment, Enrollment.sequence_id == Sequence.id)
            .where(Enrollment.subscriber_id == sub.id)
            .order_by(Enrollment.created_at.desc(), Enrollment.id.desc())
            .limit(1)
        )
        return of_sequence(seq) if seq else None


@dataclass(frozen=True)
class Form:
    slug: str
    name: str


def open_forms() -> tuple[list[Form], list[Practice]]:
    """The signup forms that take readers, and the practices (one per name) they belong to."""
    with reading() as s:
        sequences = open_sequences(s)
        practices = {seq.config.practice: of_sequence(seq) for seq in sequences}
        return [Form(seq.slug, seq.name) for seq in sequences], list(practices.values())
