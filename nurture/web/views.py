"""The subscriber's pages. Thin: parse the request, call a service, render a template.

No view sets a cookie: the signup form carries a signed, expiring token (it must work inside
a cross-site iframe, where cookies are blocked), and confirming, unsubscribing or taking a
break needs nothing but the token in the link. GET never changes state: mail scanners fetch links.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.wrappers import Response

from nurture import celery_app, tokens
from nurture.booking.service import CAL_HEADER, CALENDLY_HEADER, handle_booking_webhook
from nurture.context import current
from nurture.delivery.links import follow
from nurture.feedback import webhooks as feedback_webhooks
from nurture.sequences.archive import form_closed
from nurture.subscribers import breaks, confirmation, signup
from nurture.subscribers import unsubscribe as unsubscribe_
from nurture.web import forms, practice

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)
# A real signature header is under 200 characters; a longer one is refused before any work.
MAX_SIGNATURE_HEADER = 1024

EXPIRED = (
    "This link has expired",
    "Confirmation links work for a week. Please sign up again with the form and we will "
    "send you a fresh link.",
)
INVALID = (
    "This link does not work",
    "It may have been cut short when it was copied. Please open it again from the email, "
    "or copy the whole address.",
)


def _bad_token(exc: tokens.BadToken) -> tuple[str, int]:
    title, message = EXPIRED if isinstance(exc, tokens.ExpiredToken) else INVALID
    return render_template("pages/error.html", title=title, message=message), 400


def _layout(embed: bool) -> str:
    return "pages/embed_base.html" if embed else "pages/base.html"


def _form_page(
    slug: str, embed: bool, *, values: dict[str, str] | None = None, error: str | None = None
) -> str:
    article = request.args.get("article")
    if embed and not article and request.method == "GET":
        # An embedded form knows its article from the page around it (our own pages send
        # no Referer at all: Referrer-Policy no-referrer).
        article = request.referrer
    values = values or {}
    page = signup.signup_page(slug)
    return render_template(
        "pages/subscribe.html",
        layout=_layout(embed),
        page=page,
        practice=practice.Practice(
            name=page.practice, from_name=page.discreet_from or page.practice, series=page.name
        ),
        csrf_token=forms.form_token(slug),
        article=signup.clean_article(values.get("article") or article) or "",
        values=values,
        error=error,
        action=f"/{'embed' if embed else 'subscribe'}/{slug}",
    )


def _record_later(slug: str, form: signup.SignupForm) -> None:
    """Record the signup after answering: a worker looks the address up, records it and
    queues the confirmation (signup.sign_up, retried until it is recorded). The same work,
    off this connection, for every address: the answer, and the next request on the same
    keep-alive connection, cannot tell a known address from a new one. The form travels
    sealed, on Redis and on the embedded broker alike. An app built with
    ENQUEUE_CONFIRMATION (the demo, some tests) records it here and hands the confirmation
    to that callable."""
    custom = current_app.config.get("ENQUEUE_CONFIRMATION")
    if custom is not None:
        signup.sign_up(slug, form, custom)
        return
    try:
        celery_app.enqueue_signup(slug, signup.seal_form(form))
    except Exception:
        # The broker is down: the reader can send the form again. Never log the address.
        log.exception("could not queue a signup for %s", slug)


@bp.get("/")
def home() -> str:
    """The practice's open signup forms: the address `nurture run` prints is not a 404."""
    forms, practices = practice.open_forms()
    only = practices[0] if len(practices) == 1 else None
    return render_template("pages/home.html", forms=forms, practice=only)


@bp.route("/subscribe/<slug>", methods=["GET", "POST"], endpoint="subscribe")
def subscribe(slug: str) -> Any:
    return _signup(slug, embed=False)


@bp.route("/embed/<slug>", methods=["GET", "POST"], endpoint="embed")
def embed(slug: str) -> Any:
    return _signup(slug, embed=True)


def _signup(slug: str, *, embed: bool) -> Any:
    if form_closed(slug):
        # Archived: 410 Gone tells crawlers and embedding pages the form will not return.
        page = practice.for_slug(slug)
        return render_template("pages/closed.html", layout=_layout(embed), practice=page), 410
    if request.method != "POST":  # GET, and HEAD (which Flask routes here too)
        return _form_page(slug, embed)
    posted = forms.read_signup(request.form, request.remote_addr)
    # The form posts to itself (also inside an iframe): a foreign Origin is another site's form.
    ours = forms.same_origin(
        request.headers.get("Origin"), current().settings.base_url, request.host_url
    )
    if not ours or not forms.check_form_token(slug, posted.token):
        error = "This form had expired. Please check your details and send it again."
        return _form_page(slug, embed, values=posted.values, error=error), 400
    try:
        accepted = signup.accept(slug, posted.form)
    except signup.InvalidSignup as exc:
        return _form_page(slug, embed, values=posted.values, error=str(exc)), 400
    # The same page for every address, known or not, in the same time: nothing here may
    # depend on who it is (no subscriber is even looked up before the answer).
    body = render_template(
        "pages/check_inbox.html", layout=_layout(embed), practice=practice.for_slug(slug)
    )
    if accepted is not None:
        _record_later(slug, accepted)
    return body


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    # Only POST changes anything: HEAD (mail scanners) reads like GET.
    posted = request.method == "POST"
    try:
        if posted:
            state, name = confirmation.confirm_by_token(token)
        else:
            state, name = confirmation.confirmation_state(token)
    except tokens.BadToken as exc:
        return _bad_token(exc)
    whose = practice.for_confirm_token(token)
    if posted or state != confirmation.ConfirmState.PENDING:
        return render_template("pages/confirmed.html", state=state.value, name=name, practice=whose)
    return render_template("pages/confirm.html", name=name, token=token, practice=whose)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Any:
    # POST is also the RFC 8058 one-click target: no cookies, no CSRF token, 200, no redirect.
    # Anything but POST only shows the button: Flask routes HEAD through this view too, and
    # mail scanners send HEAD to every link.
    try:
        whose = practice.for_unsubscribe_token(token)
        if request.method != "POST":
            return render_template("pages/unsubscribe.html", token=token, practice=whose)
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        unsubscribe_.unsubscribe_by_token(token, how="one-click" if one_click else "page")
    except tokens.BadToken as exc:
        return _bad_token(exc)
    return render_template("pages/unsubscribed.html", practice=whose)


@bp.route("/break/<token>", methods=["GET", "POST"])
def take_break(token: str) -> Any:
    # As unsubscribe: only POST changes anything; GET and HEAD (mail scanners) show the button.
    try:
        whose = practice.for_break_token(token)
        if request.method != "POST":
            state = breaks.break_state(token)
            return render_template("pages/break.html", token=token, practice=whose, state=state)
        state = breaks.break_by_token(token)
    except tokens.BadToken as exc:
        return _bad_token(exc)
    return render_template("pages/break_taken.html", practice=whose, state=state)


@bp.get("/l/<token>")
def link(token: str) -> Any:
    try:
        # A HEAD (a scanner checking the link) is answered but never counted as a click.
        url = follow(token, count=request.method == "GET")
    except tokens.BadToken as exc:
        return _bad_token(exc)
    return redirect(url, code=302)


@bp.post("/webhooks/booking")
def booking_webhook() -> Response | tuple[Response, int]:
    key = current().settings.booking_webhook_key
    if key is None:
        raise HTTPNotFound()
    calendly, cal = request.headers.get(CALENDLY_HEADER), request.headers.get(CAL_HEADER)
    if any(h is not None and len(h) > MAX_SIGNATURE_HEADER for h in (calendly, cal)):
        return jsonify({"result": "bad_request"}), 400
    outcome = handle_booking_webhook(
        key.get_secret_value(),
        request.get_data(cache=False),
        calendly=calendly,
        cal=cal,
    )
    return jsonify({"result": outcome.name.lower()}), outcome.value


@bp.post("/webhooks/mail/<provider>")
def mail_webhook(provider: str) -> tuple[Response, int]:
    """Bounces and complaints from the mail provider (nurture/feedback/webhooks.py). A
    provider not switched on (NURTURE_MAIL_WEBHOOK_PROVIDERS, or its setting unset) is 404,
    as if the route did not exist."""
    settings = current().settings
    if provider not in settings.mail_webhooks:
        raise HTTPNotFound()
    secret = settings.mail_webhook_secret
    status, result = feedback_webhooks.handle_feedback_webhook(
        provider,
        request.get_data(cache=False),
        secret=secret.get_secret_value() if secret is not None else None,
        topic=settings.ses_topic_arn,
        authorization=request.headers.get("Authorization"),
        fetch=current_app.config.get("SNS_FETCH") or feedback_webhooks.fetch_https,
    )
    return jsonify({"result": result}), status
