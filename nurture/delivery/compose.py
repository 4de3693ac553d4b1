"""From (sequence, step, subscriber) to a finished EmailMessage: the one place that decides
what a sent email contains. Used by workers, `preview` and `send-test` alike."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from nurture import tokens
from nurture.config import get_settings
from nurture.content.render import EmailContext, RenderedEmail, render_email
from nurture.mail import verp
from nurture.mail.message import (
    Envelope,
    OutgoingMessage,
    build_message,
    domain_of,
    stable_message_id,
)
from nurture.sequences.models import Sequence, Step

LinkRewriter = Callable[[str, bool], str]


def unsubscribe_url(subscriber_id: int) -> str:
    token = tokens.make(tokens.UNSUBSCRIBE, {"s": subscriber_id})
    return f"{get_settings().base_url}/unsubscribe/{token}"


def test_message_id(slug: str, step_key: str, domain: str) -> str:
    # A test is a message of its own: never the real one's stable ID, which a mail client
    # would thread with (or hide behind) the real email, and the file backend would
    # overwrite the real .eml with.
    return f"<test.{slug}.{step_key}.{uuid.uuid4().hex}@{domain}>"


def reason_line(seq: Sequence) -> str:
    article = (seq.settings.get("article") or {}).get("title")
    where = f"under the article “{article}”" if article else "on our website"
    return (
        f"You are receiving this because you signed up {where} for “{seq.name}” "
        "and confirmed your address."
    )


def _discreet(seq: Sequence) -> dict[str, Any]:
    discreet = seq.settings.get("discreet") or {}
    return discreet if discreet.get("enabled", True) else {}


def render_step(
    seq: Sequence,
    step: Step,
    *,
    subscriber_id: int,
    first_name: str | None,
    rewrite: LinkRewriter | None = None,
) -> RenderedEmail:
    settings = get_settings()
    consult = seq.settings["consult"]
    consult_url = rewrite(consult["url"], True) if rewrite else consult["url"]
    ctx = EmailContext(
        subject=(_discreet(seq).get("subjects") or {}).get(step.key, step.subject),
        body_markdown=step.body,
        first_name=first_name,
        consult_url=consult_url,
        consult_text=consult.get("text") or "Book a free consult",
        consult_note=consult.get("note") or "",
        unsubscribe_url=unsubscribe_url(subscriber_id),
        postal_address=seq.settings["postal_address"],
        practice_name=seq.settings["from"]["name"],
        reason=reason_line(seq),
        base_url=settings.base_url,
        sequence_name=seq.name,
        step_key=step.key,
        discreet=bool(_discreet(seq)),
    )
    return render_email(ctx)


def compose(
    seq: Sequence,
    step: Step,
    *,
    subscriber_id: int,
    email: str,
    first_name: str | None,
    rewrite: LinkRewriter | None = None,
    test: bool = False,
    date: datetime | None = None,
    delivery_id: int | None = None,
) -> EmailMessage:
    """`delivery_id` tags the envelope sender (VERP) when NURTURE_BOUNCE_ADDRESS is set."""
    settings = get_settings()
    sender = seq.settings["from"]
    rendered = render_step(
        seq, step, subscriber_id=subscriber_id, first_name=first_name, rewrite=rewrite
    )
    domain = domain_of(sender["email"])
    env = Envelope(
        from_name=_discreet(seq).get("from_name") or sender["name"],
        from_email=sender["email"],
        to_email=email,
        to_name=first_name,
        reply_to=seq.settings.get("reply_to"),
        list_id=f"{seq.slug}.{domain}",
        unsubscribe_url=unsubscribe_url(subscriber_id),
        unsubscribe_mailto=None,
        message_id=(
            test_message_id(seq.slug, step.key, domain)
            if test
            else stable_message_id(settings.secret, subscriber_id, seq.slug, step.key, domain)
        ),
    )
    msg = build_message(env, rendered, test=test, date=date)
    if settings.bounce_address and isinstance(msg, OutgoingMessage):
        # The envelope only: the From header stays the practice's address.
        msg.envelope_from = verp.return_path(settings.bounce_address, settings.secret, delivery_id)
    return msg
