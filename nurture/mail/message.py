"""Building the MIME message. Every header goes through the email library (never string
formatting), so a first name holding a line break cannot inject a header."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from urllib.parse import urlsplit

from nurture.clock import now
from nurture.content.render import RenderedEmail


@dataclass(frozen=True)
class Envelope:
    from_name: str
    from_email: str
    to_email: str
    to_name: str | None
    reply_to: str | None
    list_id: str  # e.g. partner-refuses-therapy.example.org
    unsubscribe_url: str
    unsubscribe_mailto: str | None
    message_id: str


def stable_message_id(
    secret: str, subscriber_id: int, sequence: str, step: str, domain: str
) -> str:
    # Stable per subscriber and step, so a retried send is recognisably the same message,
    # yet keyed so the ID reveals nothing about the subscriber.
    digest = hmac.new(
        secret.encode(), f"{subscriber_id}:{sequence}:{step}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    return f"<{sequence}.{step}.{digest}@{domain}>"


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1]


def _address(name: str | None, email: str) -> Address:
    local, _, domain = email.partition("@")
    # Collapse whitespace: names come from forms, and a newline must never reach a header.
    display = " ".join((name or "").split())
    return Address(display_name=display, username=local, domain=domain)


# Long unbroken header values (the unsubscribe URL) must stay literal: with the default
# 78-column limit the library would wrap them in RFC 2047 encoded-words, which mail clients
# do not decode in List-Unsubscribe. RFC 5322 allows 998.
POLICY = default_policy.clone(max_line_length=998)
# Bodies are encoded when they are set, with the policy of that moment: quoted-printable
# lines must keep to 76 characters (RFC 2045; SpamAssassin's MIME_QP_LONG_LINE).
BODY_POLICY = default_policy.clone(max_line_length=76)


def build_message(
    env: Envelope, rendered: RenderedEmail, *, test: bool = False, date: datetime | None = None
) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = ("[TEST] " if test else "") + " ".join(rendered.subject.split())
    msg["From"] = _address(env.from_name, env.from_email)
    msg["To"] = _address(env.to_name, env.to_email)
    if env.reply_to:
        msg["Reply-To"] = _address(None, env.reply_to)
    msg["Date"] = format_datetime(date or now())
    msg["Message-ID"] = env.message_id
    msg["List-Id"] = f"<{env.list_id}>"
    unsubscribe = f"<{env.unsubscribe_url}>"
    if env.unsubscribe_mailto:
        unsubscribe += f", <mailto:{env.unsubscribe_mailto}>"
    msg["List-Unsubscribe"] = unsubscribe
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if test:
        msg["X-Nurture-Test"] = "yes"
    msg.policy = BODY_POLICY
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    msg.policy = POLICY
    _maybe_dkim(msg, env.from_email)
    return msg


def _maybe_dkim(msg: EmailMessage, from_email: str) -> None:
    from nurture.config import get_settings

    settings = get_settings()
    if not settings.dkim_enabled:
        return
    from nurture.mail import dkim

    assert settings.dkim_selector and settings.dkim_private_key  # dkim_enabled says so
    dkim.sign(msg, settings.dkim_selector, settings.dkim_private_key, domain_of(from_email))


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "localhost"
