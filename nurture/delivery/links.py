"""Tracked links: the `rewrite` hook of compose() and the /l/<token> redirect behind it.

A tracked link's token names a row in `links` and the person the email was for, and the
redirect goes only to the URL stored there: no URL ever travels in the token, so /l/ cannot
be used as an open redirect. Once
stored, a link keeps working whatever happens later (tracking switched off, the person
unsubscribed): the consult link in an old email must always reach the booking page. Clicks
are counted only while tracking is on for the link's sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from nurture import tokens
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.compose import LinkRewriter
from nurture.delivery.models import Delivery, Link
from nurture.errors import NotFound
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.settings import clicks_tracked


def link_url(link_id: int, public_id: str) -> str:
    return f"{current().settings.base_url}/l/{tokens.link_token(link_id, public_id)}"


def rewriter_for(delivery: Delivery, store: Callable[[str, bool], int]) -> LinkRewriter | None:
    """The rewrite hook for one delivery, or None when its sequence tracks no clicks (then
    links go straight to their targets and nothing is stored). `store` keeps a link for the
    delivery (inside its send's transaction) and gives its id."""
    if not clicks_tracked(delivery.enrollment.sequence.config):
        return None
    seen: dict[tuple[str, bool], str] = {}
    person = delivery.enrollment.subscriber.public_id

    def rewrite(url: str, is_consult: bool) -> str:
        if urlsplit(url).scheme not in {"http", "https"}:
            return url  # mailto: and friends stay as they are
        key = (url, is_consult)
        if key not in seen:
            seen[key] = link_url(store(url, is_consult), person)
        return seen[key]

    return rewrite


def follow(token: str, *, count: bool = True) -> str:
    """The stored URL behind a tracked link, recording the click if tracking is on.

    Raises tokens.BadToken (tampered) or NotFound (no such link).
    """
    claims = tokens.read(tokens.LINK, token)
    with transaction() as s:
        link = s.get(Link, claims.ref)
        delivery = s.get(Delivery, link.delivery_id) if link and link.delivery_id else None
        person = delivery.enrollment.subscriber.public_id if delivery else None
        if (
            link is None
            or delivery is None
            or person is None
            or not claims.names(person, link.created_at)
            or urlsplit(link.url).scheme not in {"http", "https"}
        ):
            # Also a link whose number now belongs to another person's email.
            raise NotFound("no such link")
        if count and clicks_tracked(delivery.enrollment.sequence.config):
            enrollment = delivery.enrollment
            record_event(
                s,
                EventKind.CLICKED,
                enrollment.subscriber,
                data={"consult": link.is_consult},
                sequence_id=enrollment.sequence_id,
                step_id=delivery.step_id,
                delivery_id=delivery.id,
            )
        return link.url
