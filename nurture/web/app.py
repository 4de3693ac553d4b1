"""The Flask application factory: settings, templates, security headers, rate limits, views.

Runs the same under `flask run`, the test client and gunicorn (`nurture.web.app:create_app()`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_limiter import Limiter, RateLimitExceeded
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from nurture.admin.views import bp as admin_bp
from nurture.config import Settings, load_settings
from nurture.context import current, use
from nurture.db import reading
from nurture.errors import NotFound
from nurture.paths import find_templates
from nurture.runtime import Runtime, create_runtime
from nurture.web.ratelimit import SCHEME, client_key
from nurture.web.views import bp

# The only script on any page: fill the hidden time zone field. Allowed by its hash, so the
# CSP needs no 'unsafe-inline' and no nonce.
TZ_SCRIPT = (
    "(function(){try{var z=Intl.DateTimeFormat().resolvedOptions().timeZone;"
    "var f=document.querySelectorAll('input[name=timezone]');"
    "for(var i=0;i<f.length;i++){f[i].value=z||'';}}catch(e){}})();"
)
# Inside an iframe the page tells the article around it how tall it is, so the frame can fit
# the form at any width (a fixed height hid the button on phones). It sends only a number;
# the README's embed snippet listens and checks the message comes from its own frame.
RESIZE_SCRIPT = (
    "(function(){if(window.parent===window)return;var last=0;function post(){"
    "var h=Math.ceil(document.documentElement.getBoundingClientRect().height);"
    "if(h!==last){last=h;window.parent.postMessage({nurture:'height',height:h},'*');}}"
    "window.addEventListener('load',post);window.addEventListener('resize',post);"
    "if(window.ResizeObserver){new ResizeObserver(post).observe(document.body);}post();})();"
)
EMBED_ENDPOINTS = {"pages.embed"}
# Nothing here is for search engines: forms, confirmations and unsubscribe pages.
ROBOTS_TXT = "User-agent: *\nDisallow: /\n"
# Path segments that are bearer tokens: whoever holds one may confirm, unsubscribe or click.
TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe|l|admin/setup)/[^/]+")
HSTS = "max-age=31536000"

log = logging.getLogger(__name__)


def redact_path(path: str) -> str:
    """The request path as it may be logged: tokens replaced."""
    return TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/[token]", path)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class NurtureFlask(Flask):
    def log_exception(self, exc_info: ExcInfo) -> None:
        # Flask's own line names request.path (a token for /confirm/..., /unsubscribe/...)
        # and the traceback ends with the exception's message, which can quote an address
        # (a database's DETAIL line does). Log where it happened, the frames and the type.
        kind, _, tb = exc_info if exc_info[0] is not None else sys.exc_info()
        frames = "".join(traceback.format_tb(tb)) if tb is not None else ""
        name = kind.__name__ if kind is not None else "error"
        self.logger.error(
            "Exception on %s [%s]: %s\n%s", redact_path(request.path), request.method, name, frames
        )


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _limiter_storage(settings: Settings) -> str:
    # Counters must be shared by every gunicorn worker: Redis when there is one, else the
    # database (per-process memory would multiply the limit by the number of workers).
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return f"{SCHEME}://"


def create_app(runtime: Runtime | None = None, **overrides: Any) -> Flask:
    """The web app of `runtime` (by default one built from the environment, as gunicorn's
    `create_app()` does). Every request runs with that runtime current."""
    runtime = runtime or create_runtime(load_settings())
    settings = runtime.settings
    folder = find_templates(settings.templates_dir)
    app = NurtureFlask(__name__, template_folder=str(folder), static_folder=None)
    app.config.update(
        {
            "SECRET_KEY": settings.secret,
            "MAX_CONTENT_LENGTH": 64 * 1024,
            "RATELIMIT_ENABLED": settings.rate_limit,
            "SIGNUP_RATE_LIMIT": settings.signup_rate_limit,
            "ENQUEUE_CONFIRMATION": None,  # tests may pass a callable(consent_id)
            "SNS_FETCH": None,  # tests may pass a callable(url) -> bytes (SNS certificates)
            **overrides,
        }
    )
    wsgi = app.wsgi_app
    if settings.proxy_hops:
        n = settings.proxy_hops
        wsgi = ProxyFix(wsgi, x_for=n, x_proto=n, x_host=n)
    app.wsgi_app = _with_runtime(wsgi, runtime)  # type: ignore[method-assign]
    _add_security_headers(app, settings, (folder / "pages" / "style.css").read_text("utf-8"))
    _add_proxy_hint(app, settings)
    _add_views(app, settings)
    _add_error_pages(app)
    return app


def _with_runtime(wsgi: Any, runtime: Runtime) -> Any:
    def app(environ: Any, start_response: Any) -> Any:
        with use(runtime):
            return wsgi(environ, start_response)

    return app


def _add_security_headers(app: Flask, settings: Settings, css: str) -> None:
    csp_base = (
        "default-src 'none'; "
        f"style-src {_csp_hash(css)}; "
        f"script-src {_csp_hash(TZ_SCRIPT)} {_csp_hash(RESIZE_SCRIPT)}; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'"
    )

    @app.context_processor
    def _inline_assets() -> dict[str, Any]:
        return {"inline_css": css, "tz_script": TZ_SCRIPT, "resize_script": RESIZE_SCRIPT}

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        embed = request.endpoint in EMBED_ENDPOINTS
        ancestors = settings.embed_ancestors if embed else "'none'"
        # A view that set its own policy (the dashboard's) keeps it.
        resp.headers.setdefault(
            "Content-Security-Policy", f"{csp_base}; frame-ancestors {ancestors}"
        )
        if not embed:
            resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        resp.headers["Cache-Control"] = "no-store"
        if request.is_secure:
            # Behind a TLS proxy this needs NURTURE_PROXY_HOPS, so X-Forwarded-Proto counts.
            resp.headers["Strict-Transport-Security"] = HSTS
        return resp


def _add_proxy_hint(app: Flask, settings: Settings) -> None:
    warned: list[bool] = []

    @app.before_request
    def _proxy_hint() -> None:
        # X-Forwarded-For with NURTURE_PROXY_HOPS=0: a proxy is in front but ignored, so every
        # reader shares the proxy's address (one rate-limit bucket for all). Said once.
        if warned or settings.proxy_hops or "X-Forwarded-For" not in request.headers:
            return
        warned.append(True)
        log.warning(
            "requests arrive with X-Forwarded-For but NURTURE_PROXY_HOPS is 0: set it to the "
            "number of proxies in front (see docs/operations.md), or every reader shares one "
            "rate limit"
        )


def _add_views(app: Flask, settings: Settings) -> None:
    limiter = Limiter(
        client_key,
        app=app,
        storage_uri=_limiter_storage(settings),
        strategy="fixed-window",
        headers_enabled=False,
    )
    # The limits hold only a weak reference to their limiter: the app keeps it alive.
    app.extensions["nurture.limiter"] = limiter
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    # Only sending the form counts against the limit (one budget for the page and the
    # embed); reading pages never does.
    signup_limit = limiter.shared_limit(
        app.config["SIGNUP_RATE_LIMIT"], scope="signup", methods=["POST"]
    )
    views: dict[str, Any] = app.view_functions
    for endpoint in ("pages.subscribe", "pages.embed"):
        views[endpoint] = signup_limit(views[endpoint])

    @app.get("/robots.txt")
    def robots() -> Response:
        return Response(ROBOTS_TXT, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Any:
        # 200 when both answer; 503 (with the same body saying what is down) lets load
        # balancers and container health checks act on the status code alone.
        status = health()
        return jsonify(status), 200 if status["ok"] else 503


def _add_error_pages(app: Flask) -> None:
    def _error(code: int, title: str, message: str) -> tuple[str, int]:
        return render_template("pages/error.html", title=title, message=message), code

    @app.errorhandler(RateLimitExceeded)
    def _too_many(_: Exception) -> tuple[str, int]:
        return _error(
            429,
            "Please wait a moment",
            "We received several sign-ups from your connection in a short time. "
            "Please try again in a few minutes.",
        )

    @app.errorhandler(OperationalError)
    def _database_busy(exc: OperationalError) -> Any:
        # A database that is busy past the lock timeout, or away for a moment, is "try
        # again shortly", not a server error; only its type is logged (never the statement).
        log.warning(
            "database unavailable for %s: %s", redact_path(request.path), type(exc.orig).__name__
        )
        body, code = _error(
            503,
            "Please try again in a moment",
            "We could not finish this just now. Please send it again in a moment.",
        )
        return Response(body, code, headers={"Retry-After": "5"})

    @app.errorhandler(NotFound)
    @app.errorhandler(404)
    def _not_found(_: Exception) -> tuple[str, int]:
        return _error(
            404,
            "Page not found",
            "This page does not exist. If you followed a link, it may have been mistyped.",
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        return _error(code, exc.name, "Something about this request was not right.")


def health() -> dict[str, Any]:
    status: dict[str, Any] = {"database": "ok", "broker": "ok"}
    try:
        with reading() as s:  # never waits for a writer (nurture/db.py)
            s.execute(text("SELECT 1"))
    except Exception as exc:  # report, never crash the health check
        status["database"] = f"error: {type(exc).__name__}"
    try:
        with current().celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        status["broker"] = f"error: {type(exc).__name__}"
    status["ok"] = status["database"] == "ok" and status["broker"] == "ok"
    return status
