"""The dashboard at /admin: thin views over nurture/admin/ (auth, actions, queries).

Off (404) until an operator exists. Every page but the login and setup pages needs a live
server-side session; every POST carries a CSRF token (the session's, or on the login and setup
forms a signed one). No page uses JavaScript, so the CSP allows no script at all. A reader's
address is shown only on their own timeline and in the readers list and search, and never
travels in a URL (search is a POST): URLs end up in logs.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from nurture.admin import actions, auth, charts, queries
from nurture.admin.services import any_operator, audit, audit_log
from nurture.admin.snapshots import snapshots
from nurture.context import current
from nurture.db import reading, transaction
from nurture.errors import NotFound, NurtureError
from nurture.web import forms
from nurture.web.ratelimit import client_key

bp = Blueprint("admin", __name__, url_prefix="/admin")
PUBLIC = {"admin.login", "admin.setup"}
FORM = "admin"  # the signed CSRF token's subject on the login and setup forms


@dataclass(frozen=True)
class Signed:
    name: str
    csrf: str
    token: str


def cookie_name() -> str:
    # __Host-: the browser sends it only over https, to this host, for every path.
    return "__Host-nurture-admin" if request.is_secure else "nurture-admin"


@bp.record_once
def _read_css(state: Any) -> None:
    app: Flask = state.app
    css = (Path(app.template_folder or "") / "admin" / "admin.css").read_text("utf-8")
    app.extensions["nurture.admin_css"] = css
    app.extensions["nurture.admin_csp"] = (
        "default-src 'none'; "
        f"style-src {charts.csp_hash(css)}; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-src 'self'; frame-ancestors 'none'"
    )


@bp.context_processor
def _page_context() -> dict[str, Any]:
    from flask import current_app

    signed: Signed | None = g.get("admin")
    return {
        "admin_css": current_app.extensions["nurture.admin_css"],
        "operator": signed.name if signed else None,
        "csrf_token": signed.csrf if signed else forms.form_token(FORM),
        "zone": queries.zone_name(),
    }


def _refused(message: str, code: int) -> tuple[str, int]:
    """Every refusal looks alike: the login form with one line, and nothing changed."""
    g.admin = None
    return render_template("admin/login.html", error=message, title="Log in"), code


@bp.before_request
def _gate() -> Any:
    with reading() as s:
        if not any_operator(s):
            abort(404)
    g.admin = None
    token = request.cookies.get(cookie_name())
    if token:
        with transaction() as s:
            row = auth.session_for(s, token)
            if row is not None:
                g.admin = Signed(row.operator.name, row.csrf_token, token)
    posted = request.method == "POST"
    if request.endpoint in PUBLIC:
        same = forms.same_origin(
            request.headers.get("Origin"), current().settings.base_url, request.host_url
        )
        if posted and not (same and forms.check_form_token(FORM, request.form.get("csrf_token"))):
            return _refused("This form had expired. Please try again.", 400)
        return None
    if g.admin is None:
        message = "Your session has ended. Please log in again." if token else None
        body, code = _refused(message or "Please log in.", 401)
        resp = Response(body, code, mimetype="text/html")
        if token:
            resp.delete_cookie(cookie_name(), path="/")
        return resp
    if posted and not hmac.compare_digest(request.form.get("csrf_token", ""), g.admin.csrf):
        return _refused("This form had expired. Please log in and try again.", 400)
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    from flask import current_app

    if request.endpoint != "admin.step_preview":
        resp.headers["Content-Security-Policy"] = current_app.extensions["nurture.admin_csp"]
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _operator() -> str:
    signed: Signed = g.admin
    return signed.name


# --- setup, login, logout -------------------------------------------------------------


@bp.route("/setup/<token>", methods=["GET", "POST"])
def setup(token: str) -> Any:
    with reading() as s:
        try:
            op = auth.setup_operator(s, token)
        except auth.SetupRefused:
            return _refused("This setup link is not valid: it was used, or it expired.", 400)
        name, uri, secret = op.name, auth.totp_uri(op), auth.totp_of(op).secret
    if request.method != "POST":
        return _setup_page(name, uri, secret, None, 200)
    try:
        with transaction() as s:
            done = auth.finish_setup(
                s, token, request.form.get("password", ""), request.form.get("code", "")
            )
            audit(s, name, "operator set up", target=name)
    except auth.LinkRefused:
        return _refused("This setup link is not valid: it was used, or it expired.", 400)
    except auth.SetupRefused as exc:
        return _setup_page(name, uri, secret, str(exc), 400)
    return render_template("admin/setup_done.html", codes=done.recovery_codes, name=name)


def _setup_page(name: str, uri: str, secret: str, error: str | None, code: int) -> Any:
    production = current().settings.env == "production"
    return render_template(
        "admin/setup.html",
        name=name,
        qr=auth.qr_svg(uri),
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        error=error,
        totp_required=production,
        min_password=auth.MIN_PASSWORD,
    ), code


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method != "POST":
        if g.admin is not None:
            return redirect(url_for("admin.overview"), 303)
        return render_template("admin/login.html", error=None, title="Log in")
    name = request.form.get("name", "")[:60]
    client = client_key()
    with reading() as s:
        wait = auth.waiting(s, auth.throttle_keys(name, client))
    if wait.total_seconds() > 0:
        seconds = int(wait.total_seconds()) + 1
        return _refused(f"Too many tries. Please wait {seconds} seconds and try again.", 429)
    with transaction() as s:
        op = auth.log_in(
            s, name, request.form.get("password", ""), request.form.get("code", ""), client
        )
        token = auth.open_session(s, op) if op is not None else None
        if op is not None:
            audit(s, op.name, "logged in")
    if token is None:
        return _refused("Those details do not match an operator.", 401)
    snapshots().warm(HEAVY)  # the pages they open next are counted meanwhile
    resp = redirect(url_for("admin.overview"), 303)
    resp.set_cookie(
        cookie_name(),
        token,
        max_age=int(auth.ABSOLUTE.total_seconds()),
        path="/",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return resp


@bp.post("/logout")
def logout() -> Any:
    with transaction() as s:
        auth.close_session(s, g.admin.token)
        audit(s, _operator(), "logged out")
    g.admin = None
    resp = Response(
        render_template("admin/login.html", error=None, notice="You are logged out."),
        200,
        mimetype="text/html",
    )
    resp.delete_cookie(cookie_name(), path="/")
    return resp


# --- pages ----------------------------------------------------------------------------


# The pages counted by nurture/reports.py, answered from a snapshot (nurture/admin/snapshots.py).
HEAVY = {
    "overview": queries.overview,
    "week": queries.this_week,
    "sequences": queries.sequences,
}


def _counted(name: str) -> tuple[Any, str]:
    data, made_at = snapshots().get(name, HEAVY[name])
    return data, queries.local(made_at)


@bp.get("/")
def overview() -> Any:
    data, counted = _counted("overview")
    return render_template(
        "admin/overview.html", data=data, charts=charts, counted=counted, title="Overview"
    )


@bp.get("/week")
def week() -> Any:
    data, counted = _counted("week")
    return render_template("admin/week.html", data=data, counted=counted, title="This week")


@bp.route("/readers", methods=["GET", "POST"])
def readers() -> Any:
    status = request.args.get("status") or None
    if status is not None and status not in queries.READER_STATUSES:
        status = None
    before = request.args.get("before", type=int)
    found: str | None = None
    if request.method == "POST":
        with reading() as s:
            public_id = queries.find_reader(s, request.form.get("email", ""))
        if public_id is not None:
            return redirect(url_for("admin.reader", public_id=public_id), 303)
        found = "No reader has that address (it must match exactly)."
    with reading() as s:
        page = queries.readers_page(s, status, before)
    return render_template(
        "admin/readers.html",
        page=page,
        status=status,
        statuses=queries.READER_STATUSES,
        not_found=found,
        title="Readers",
    )


@bp.get("/readers/<public_id>")
def reader(public_id: str) -> Any:
    try:
        with reading() as s:
            data = queries.timeline(s, public_id)
    except NotFound:
        abort(404)
    return render_template(
        "admin/reader.html",
        r=data,
        notice=request.args.get("done"),
        actions=actions.ReaderAction,
        title="Reader",
    )


@bp.route("/readers/<public_id>/<action>", methods=["GET", "POST"])
def reader_action(public_id: str, action: str) -> Any:
    try:
        what = actions.ReaderAction(action)
    except ValueError:
        abort(404)
    slug = request.values.get("sequence") or None
    if request.method != "POST":  # the one question each action asks, changing nothing
        with reading() as s:
            try:
                actions.reader(s, public_id)
            except NotFound:
                abort(404)
        return render_template(
            "admin/confirm.html",
            question=actions.QUESTIONS[what],
            action=url_for("admin.reader_action", public_id=public_id, action=what.value),
            back=url_for("admin.reader", public_id=public_id),
            sequence=slug,
            title="Please confirm",
        )
    try:
        done = actions.act_on_reader(_operator(), public_id, what, slug)
    except NotFound:
        abort(404)
    except NurtureError as exc:
        return _back_to_reader(public_id, str(exc))
    snapshots().forget()
    if done.gone:
        return render_template("admin/done.html", message=done.message, title="Done")
    return _back_to_reader(public_id, done.message)


def _back_to_reader(public_id: str, message: str) -> Response:
    return redirect(url_for("admin.reader", public_id=public_id, done=message), 303)


@bp.get("/sequences")
def sequences() -> Any:
    data, counted = _counted("sequences")
    return render_template(
        "admin/sequences.html",
        data=data,
        counted=counted,
        notice=request.args.get("done"),
        title="Sequences",
    )


@bp.route("/sequences/<slug>/<action>", methods=["GET", "POST"])
def sequence_action(slug: str, action: str) -> Any:
    try:
        what = actions.SequenceAction(action)
    except ValueError:
        abort(404)
    if request.method != "POST":
        return render_template(
            "admin/confirm.html",
            question=f"{what.value.capitalize()} the sequence {slug}?",
            action=url_for("admin.sequence_action", slug=slug, action=what.value),
            back=url_for("admin.sequences"),
            sequence=None,
            title="Please confirm",
        )
    try:
        message = actions.act_on_sequence(_operator(), slug, what)
    except NotFound:
        abort(404)
    except NurtureError as exc:
        message = str(exc)
    snapshots().forget()
    return redirect(url_for("admin.sequences", done=message), 303)


@bp.get("/sequences/<slug>/steps/<key>")
def step_preview(slug: str, key: str) -> Any:
    """One step's email as a sample reader gets it, for the sandboxed frame."""
    try:
        with reading() as s:
            html = queries.step_html(s, slug, key)
    except NotFound:
        abort(404)
    resp = Response(html, mimetype="text/html")
    # The email's own inline styles, nothing else; sandboxed even if opened on its own.
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'self'; sandbox"
    )
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    return resp


@bp.get("/failed")
def failed() -> Any:
    with reading() as s:
        rows = queries.failed_deliveries(s)
    return render_template(
        "admin/failed.html", rows=rows, notice=request.args.get("done"), title="Failed deliveries"
    )


@bp.post("/failed/<int:delivery_id>/retry")
def retry(delivery_id: int) -> Any:
    try:
        message = actions.retry(_operator(), delivery_id)
    except NurtureError as exc:
        message = str(exc)
    snapshots().forget()
    return redirect(url_for("admin.failed", done=message), 303)


@bp.get("/audit")
def audit_page() -> Any:
    before = request.args.get("before", type=int)
    with reading() as s:
        rows = audit_log(s, 100, before)
    return render_template(
        "admin/audit.html", rows=rows, fmt=queries.local, title="Audit log", before=before
    )
