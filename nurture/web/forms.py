"""The signup form as the web sees it: its anti-forgery token, and reading what was posted.

The form carries a signed, expiring token instead of a cookie: it must work inside a
cross-site iframe, where cookies are blocked. A foreign Origin means another site's form
is posting here (ours posts to itself, also inside an iframe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from nurture import tokens
from nurture.subscribers.cleaning import clean
from nurture.subscribers.signup import SignupForm


def form_token(slug: str) -> str:
    return tokens.make(tokens.FORM, {"q": slug})


def check_form_token(slug: str, token: str | None) -> bool:
    if not token:
        return False
    try:
        claims = tokens.read(tokens.FORM, token)
    except tokens.BadToken:
        return False
    return claims.payload.get("q") == slug


def same_origin(origin: str | None, *ours: str) -> bool:
    """A browser's Origin header, when sent, must be one of `ours` (base URLs)."""
    if not origin or origin == "null":
        return True
    return _origin_of(origin) in {_origin_of(url) for url in ours}


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class PostedSignup:
    form: SignupForm
    token: str | None  # the form's anti-forgery token, for check_form_token
    values: dict[str, str]  # what the form shows again when it must be sent once more


def read_signup(posted: Mapping[str, str], client_address: str | None) -> PostedSignup:
    """The posted fields, cut to size and without control characters."""
    # Control characters go at the door, for every field and every address alike.
    f = {key: clean(value) for key, value in posted.items()}
    values = {
        "email": f.get("email", "")[:320],
        "first_name": f.get("first_name", "")[:100],
        "article": f.get("article", "")[:500],
    }
    form = SignupForm(
        email=values["email"],
        first_name=values["first_name"].strip() or None,
        timezone=f.get("timezone", "").strip()[:64] or None,
        article=values["article"] or None,
        honeypot=f.get("website", ""),
        client_address=client_address,
    )
    return PostedSignup(form=form, token=f.get("csrf_token"), values=values)
