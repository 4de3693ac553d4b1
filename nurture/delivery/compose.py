"""From a sequence and a person to a finished EmailMessage: the one builder of every email,
the confirmation and each step alike. Used by workers, `preview`, `send-test` and signup.

What reaches the inbox is decided here, once: the From name, the subject, the preview, the
List-Id and Message-ID (neutral in discreet mode: none of them may name the topic), the
List-Unsubscribe headers, and the footer line saying truly how the person came.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from nurture import tokens
from nurture.content.render import EmailContext, RenderedEmail, render_email
from nurture.context import current
from nurture.mail import verp
from nurture.mail.message import (
    Envelope,
    OutgoingMessage,
    build_message,
    domain_of,
    stable_message_id,
)
from nurture.paths import templates_dir
from nurture.sequences.models import Sequence, Step

LinkRewriter = Callable[[str, bool], str]

WEB_FORM, OPERATOR, IMPORT = "web-form", "cli", "import"


def unsubscribe_url(public_id: str) -> str:
    return f"{current().settings.base_url}/unsubscribe/{tokens.unsubscribe_token(public_id)}"


def break_url(public_id: str) -> str:
    return f"{current().settings.base_url}/break/{tokens.break_token(public_id)}"


def test_message_id(slug: str, step_key: str, domain: str) -> str:
    # A test is a message of its own: never the real one's stable ID, which a mail client
    # would thread with (or hide behind) the real email, and the file backend would
    # overwrite the real .eml with.
    return f"<test.{slug}.{step_key}.{uuid.uuid4().hex}@{domain}>"


def confirm_url(consent_id: int, public_id: str) -> str:
    return f"{current().settings.base_url}/confirm/{tokens.confirm_token(consent_id, public_id)}"


def reason_line(seq: Sequence, came_by: str | None = WEB_FORM) -> str:
    """Why this person receives the email, true for how they came (Enrollment.source)."""
    cfg = seq.config
    if came_by == OPERATOR:
        return (
            f"You are receiving this because {cfg.practice} added you to “{seq.name}” "
            "with your permission."
        )
    if came_by == IMPORT:
        return (
            f"You are receiving this because {cfg.practice} added you to “{seq.name}” from "
            "their list of people who agreed to hear from them."
        )
    where = f"under the article “{cfg.article_title}”" if cfg.article_title else "on our website"
    return (
        f"You are receiving this because you signed up {where} for “{seq.name}” "
        "and confirmed your address."
    )


def build_email(
    seq: Sequence,
    rendered: RenderedEmail,
    *,
    public_id: str,
    email: str,
    to_name: str | None,
    key: str,
    test: bool = False,
    date: datetime | None = None,
    unsubscribe: str | None = None,
) -> EmailMessage:
    """The envelope and headers every email shares; `key` makes its Message-ID stable.
    `unsubscribe`: the reader's unsubscribe URL when the caller has it already."""
    settings = current().settings
    cfg = seq.config
    domain = domain_of(cfg.from_.email)
    label = cfg.list_label(seq.slug, settings.secret)
    env = Envelope(
        from_name=cfg.inbox_from_name,
        from_email=cfg.from_.email,
        to_email=email,
        to_name=to_name,
        reply_to=cfg.reply_to,
        list_id=f"{label}.{domain}",
        unsubscribe_url=unsubscribe or unsubscribe_url(public_id),
        unsubscribe_mailto=None,
        message_id=(
            test_message_id(label, key, domain)
            if test
            else stable_message_id(
                settings.secret, public_id, label, key, domain, opaque=cfg.is_discreet
            )
        ),
    )
    return build_message(env, rendered, test=test, date=date)


# --- sequence steps -----------------------------------------------------------------------


def render_step(
    seq: Sequence,
    step: Step,
    *,
    public_id: str,
    first_name: str | None,
    rewrite: LinkRewriter | None = None,
    came_by: str | None = WEB_FORM,
    unsubscribe: str | None = None,
) -> RenderedEmail:
    settings = current().settings
    cfg = seq.config
    consult_url = rewrite(cfg.consult.url, True) if rewrite else cfg.consult.url
    ctx = EmailContext(
        subject=cfg.subject_for(step.key, step.subject),
        body_markdown=step.body,
        first_name=first_name,
        consult_url=consult_url,
        consult_text=cfg.consult.text or "Book a free consult",
        consult_note=cfg.consult.note or "",
        unsubscribe_url=unsubscribe or unsubscribe_url(public_id),
        break_url=break_url(public_id),
        postal_address=cfg.postal_address,
        practice_name=cfg.practice,
        reason=reason_line(seq, came_by),
        base_url=settings.base_url,
        sequence_name=seq.name,
        step_key=step.key,
        discreet=cfg.is_discreet,
    )
    return render_email(ctx)


def compose(
    seq: Sequence,
    step: Step,
    *,
    public_id: str,
    email: str,
    first_name: str | None,
    rewrite: LinkRewriter | None = None,
    test: bool = False,
    date: datetime | None = None,
    came_by: str | None = WEB_FORM,
    delivery_id: int | None = None,
) -> EmailMessage:
    """`delivery_id` tags the envelope sender (VERP) when NURTURE_BOUNCE_ADDRESS is set."""
    # Signed once: the link in the footer and the List-Unsubscribe header are one token.
    unsubscribe = unsubscribe_url(public_id)
    rendered = render_step(
        seq, step, public_id=public_id, first_name=first_name, rewrite=rewrite,
        came_by=came_by, unsubscribe=unsubscribe,
    )  # fmt: skip
    msg = build_email(
        seq, rendered, public_id=public_id, email=email, to_name=first_name,
        key=step.key, test=test, date=date, unsubscribe=unsubscribe,
    )  # fmt: skip
    settings = current().settings
    if settings.bounce_address and isinstance(msg, OutgoingMessage):
        # The envelope only: the From header stays the practice's address.
        msg.envelope_from = verp.return_path(
            settings.bounce_address, settings.secret, delivery_id, public_id
        )
    return msg


# --- the confirmation ---------------------------------------------------------------------


def _confirm_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir() / "email" / "confirm"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def render_confirmation(seq: Sequence, consent_id: int, public_id: str) -> RenderedEmail:
    """The confirmation greets nobody by name: the name was typed by whoever filled in the
    form, perhaps not the address's owner, and must not carry their words into an inbox.
    In discreet mode it does not name the series either."""
    cfg = seq.config
    env = _confirm_env()
    max_age = tokens.MAX_AGE[tokens.CONFIRM] or 0
    values: dict[str, Any] = {
        "sequence_name": None if cfg.is_discreet else seq.name,
        "sender_name": cfg.inbox_from_name,
        "postal_address": cfg.postal_address,
        "confirm_url": confirm_url(consent_id, public_id),
        "valid_days": max_age // 86400,
    }
    return RenderedEmail(
        subject=" ".join(env.get_template("subject.txt").render(values).split()),
        text=env.get_template("body.txt").render(values),
        html=env.get_template("body.html").render(values),
    )


def confirmation_email(
    seq: Sequence, *, public_id: str, email: str, consent_id: int
) -> EmailMessage:
    return build_email(
        seq,
        render_confirmation(seq, consent_id, public_id),
        public_id=public_id,
        email=email,
        to_name=None,  # not the typed name: see render_confirmation
        key=f"confirm-{consent_id}",
    )
