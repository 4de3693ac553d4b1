"""Looking people up: the list, and one person's whole story."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from nurture.delivery.models import Delivery
from nurture.events.models import Event
from nurture.sequences.models import Sequence, Step
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)

STATUSES = sorted({s.value for s in (*SubscriberStatus, *EnrollmentStatus)})


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def detail(data: dict[str, Any] | None) -> str:
    """An event's data in a few words: codes, sources and actions only (events hold no
    addresses or message content)."""
    if not data:
        return ""
    parts = []
    for key in ("type", "status", "reason", "action", "how"):
        if data.get(key):
            parts.append(str(data[key]))
    for key, word in (("to", "to"), ("source", "via"), ("by", "by")):
        if data.get(key):
            parts.append(f"{word} {data[key]}")
    return " ".join(parts)


def person(sub: Subscriber) -> dict[str, Any]:
    """What we hold on the person themselves (exports and `show` alike)."""
    return {
        "email": sub.email,
        "first_name": sub.first_name,
        "timezone": sub.timezone,
        "status": sub.status,
        "created_at": iso(sub.created_at),
        "confirmed_at": iso(sub.confirmed_at),
        "unsubscribed_at": iso(sub.unsubscribed_at),
        "booked_at": iso(sub.booked_at),
        "bounced_at": iso(sub.bounced_at),
        "complained_at": iso(sub.complained_at),
    }


def list_subscribers(
    s: Session, slug: str | None = None, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """One row per person and sequence. `status` matches the person's status (pending,
    confirmed, unsubscribed, bounced) or their enrollment's (active, completed, booked...)."""
    last = aliased(Step)
    q = (
        select(Subscriber, Enrollment, Sequence.slug, last.key)
        .outerjoin(Enrollment, Enrollment.subscriber_id == Subscriber.id)
        .outerjoin(Sequence, Sequence.id == Enrollment.sequence_id)
        .outerjoin(last, last.id == Enrollment.last_step_id)
        .order_by(Subscriber.id, Sequence.slug)
    )
    if slug:
        q = q.where(Enrollment.sequence_id == get_sequence(s, slug).id)
    if status:
        q = q.where(or_(Subscriber.status == status, Enrollment.status == status))
    if limit:
        q = q.limit(limit)
    return [
        {
            "email": sub.email,
            "first_name": sub.first_name,
            "status": sub.status,
            "sequence": seq_slug,
            "enrollment": enr.status if enr else None,
            "last_step": last_key,
            "next_due_at": iso(enr.next_due_at) if enr else None,
            "created_at": iso(sub.created_at),
        }
        for sub, enr, seq_slug, last_key in s.execute(q)
    ]


def subscriber_history(s: Session, email: str) -> dict[str, Any]:
    """Everything that happened with one person, for `subscribers show`."""
    sub = get_subscriber(s, email)
    names = _Names(
        slugs={i: slug for i, slug in s.execute(select(Sequence.id, Sequence.slug))},
        keys={i: key for i, key in s.execute(select(Step.id, Step.key))},
    )
    enrollments = list(
        s.scalars(
            select(Enrollment).where(Enrollment.subscriber_id == sub.id).order_by(Enrollment.id)
        )
    )
    return {
        **person(sub),
        "consents": _consents(s, sub, names),
        "enrollments": [_enrollment(e, names) for e in enrollments],
        "deliveries": _deliveries(s, enrollments, names),
        "events": _events(s, sub, names),
    }


@dataclass(frozen=True)
class _Names:
    """Ids to the names a person's history shows: sequence slugs and step keys."""

    slugs: dict[int, str]
    keys: dict[int, str]

    def slug(self, sequence_id: int | None) -> str | None:
        return self.slugs.get(sequence_id) if sequence_id else None

    def key(self, step_id: int | None) -> str | None:
        return self.keys.get(step_id) if step_id else None


def _consents(s: Session, sub: Subscriber, names: _Names) -> list[dict[str, Any]]:
    consents = s.scalars(
        select(Consent).where(Consent.subscriber_id == sub.id).order_by(Consent.id)
    )
    return [
        {
            "sequence": names.slug(c.sequence_id),
            "source": c.source,
            "article": c.article,
            "text": c.consent_text,
            "version": c.consent_version,
            "at": iso(c.created_at),
            "confirmed_at": iso(c.confirmed_at),
        }
        for c in consents
    ]


def _enrollment(e: Enrollment, names: _Names) -> dict[str, Any]:
    return {
        "sequence": names.slugs.get(e.sequence_id),
        "status": e.status,
        "started_at": iso(e.started_at),
        "last_step": names.key(e.last_step_id),
        "last_sent_at": iso(e.last_sent_at),
        "next_step": names.key(e.next_step_id),
        "next_due_at": iso(e.next_due_at),
        "paused_until": iso(e.paused_until),  # the end of the reader's break
        "ended_at": iso(e.ended_at),
    }


def _deliveries(s: Session, enrollments: list[Enrollment], names: _Names) -> list[dict[str, Any]]:
    deliveries = s.scalars(
        select(Delivery)
        .where(Delivery.enrollment_id.in_([e.id for e in enrollments]))
        .order_by(Delivery.due_at, Delivery.id)
    )
    enrollment_seq = {e.id: e.sequence_id for e in enrollments}
    return [
        {
            "id": d.id,
            "sequence": names.slugs.get(enrollment_seq[d.enrollment_id]),
            "step": names.keys.get(d.step_id),
            "status": d.status,
            "due_at": iso(d.due_at),
            "sent_at": iso(d.sent_at),
            "attempts": d.attempts,
            "error": d.error,
        }
        for d in deliveries
    ]


def _events(s: Session, sub: Subscriber, names: _Names) -> list[dict[str, Any]]:
    events = s.scalars(select(Event).where(Event.subscriber_id == sub.id).order_by(Event.id))
    return [
        {
            "kind": ev.kind,
            "at": iso(ev.created_at),
            "sequence": names.slug(ev.sequence_id),
            "step": names.key(ev.step_id),
            "data": ev.data,
            # What came back and what it did, e.g. "hard 5.1.1 via imap", "paused by reply".
            "detail": detail(ev.data),
        }
        for ev in events
    ]


# How each consent came, in the operator's words (Consent.source as stored).
CAME_BY = {"web-form": "form", "import": "import", "cli": "operator"}


def consent_proof(s: Session, email: str) -> dict[str, Any]:
    """`subscribers consent`: the evidence of each yes this person gave, oldest first: when,
    the exact words they were shown (or the operator's record of holding their consent),
    and how and where they came. Raises NotFound for an address not held."""
    sub = get_subscriber(s, email)
    sequences = {seq.id: seq for seq in s.scalars(select(Sequence))}
    consents = s.scalars(
        select(Consent).where(Consent.subscriber_id == sub.id).order_by(Consent.id)
    )
    proof = []
    for c in consents:
        seq = sequences.get(c.sequence_id) if c.sequence_id else None
        proof.append(
            {
                "sequence": seq.slug if seq else None,
                "sequence_name": seq.name if seq else None,
                "given_at": iso(c.created_at),
                "confirmed_at": iso(c.confirmed_at),
                "how": CAME_BY.get(c.source, c.source),
                "source": c.source,
                # The page the form was on (scheme, host and path only; signup.clean_article).
                "page": c.article,
                "text": c.consent_text,
                "version": c.consent_version,
                # A keyed hash of the client's address was kept (never the address itself).
                "client_recorded": c.client_hash is not None,
            }
        )
    return {"email": sub.email, "status": sub.status, "consents": proof}
