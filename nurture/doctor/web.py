"""Do the links in emails work? NURTURE_BASE_URL starts every link (confirm, unsubscribe,
take a break), and Gmail and Yahoo press the one-click unsubscribe themselves: a POST with
the body `List-Unsubscribe=One-Click` to the List-Unsubscribe address (RFC 8058), which
must answer without a redirect, a login or a cookie.

The check sends that POST with a real token, signed with this NURTURE_SECRET_KEY, that names
no one (a public id nobody has), so nobody is unsubscribed, and a web service running
with another key is caught too: its answer says the link is not valid.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
from urllib.parse import urlsplit

from nurture import tokens
from nurture.config import Settings
from nurture.doctor.report import Finding, fail, ok, warn

BODY = b"List-Unsubscribe=One-Click"
MAX_BODY = 65536


def check_base_url(settings: Settings) -> Finding:
    base = settings.base_url
    parts = urlsplit(base)
    production = settings.env == "production"
    if _is_local(parts.hostname or "") and production:
        return fail(
            "base-url",
            base,
            "NURTURE_BASE_URL points at this machine, so no reader can open the links in "
            "your emails: set it to the public https:// address of the web service",
        )
    if parts.scheme != "https":
        text = (
            "links in emails would be plain http: mail providers and readers distrust them, "
            "and the unsubscribe link travels unprotected; set NURTURE_BASE_URL to the "
            "https:// address your TLS proxy serves"
        )
        return fail("base-url", base, text) if production else warn("base-url", base, text)
    return ok("base-url", base, "links in emails use https")


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_one_click(settings: Settings, *, cafile: str | None, timeout: float) -> Finding:
    url = f"{settings.base_url}/unsubscribe/{tokens.unsubscribe_token(tokens.NO_ONE)}"
    where = settings.base_url
    try:
        status, location, page = _post(url, cafile=cafile, timeout=timeout)
    except ssl.SSLCertVerificationError as exc:
        text = f"the https certificate of {settings.base_url} is not valid ({exc.verify_message})"
        return fail("one-click", where, f"{text}: fix the certificate of your TLS proxy")
    except OSError as exc:
        return fail(
            "one-click",
            where,
            f"nothing answered a POST to /unsubscribe/ ({_why(exc, timeout)}): start the web "
            "service (nurture web, or nurture run) and make sure NURTURE_BASE_URL is the "
            "address readers reach it at",
        )
    return _judge(status, location, page, where)


def _why(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    return type(exc).__name__


def _post(url: str, *, cafile: str | None, timeout: float) -> tuple[int, str, str]:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        # As a mail provider sends it: no cookie, no CSRF token, no redirect followed.
        conn.request(
            "POST",
            parts.path,
            body=BODY,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "nurture-doctor",
            },
        )
        resp = conn.getresponse()
        page = resp.read(MAX_BODY).decode("utf-8", "replace")
        return resp.status, resp.getheader("Location") or "", page
    finally:
        conn.close()


def _judge(status: int, location: str, page: str, where: str) -> Finding:
    if status == 200 and "unsubscribed" in page.lower():
        return ok("one-click", where, "a POST to /unsubscribe/ answers 200, as RFC 8058 asks")
    if status == 200:
        return warn(
            "one-click",
            where,
            "answered 200, but not with nurture's unsubscribe page: check that "
            "NURTURE_BASE_URL reaches nurture and not another site",
        )
    if 300 <= status < 400:
        return fail(
            "one-click",
            where,
            f"answered with a redirect ({status} to {location or 'elsewhere'}); mail "
            "providers do not follow it: set NURTURE_BASE_URL to the address it redirects to",
        )
    if status == 400 and "does not work" in page:
        return fail(
            "one-click",
            where,
            "the web service refused a link signed with this NURTURE_SECRET_KEY: it runs with "
            "another key, so no link in any email works; give every nurture service the same key",
        )
    if status >= 500:
        text = f"the web service failed (HTTP {status}): look at its log (nurture web)"
        return fail("one-click", where, text)
    what = {404: " (not found)", 405: " (POST not allowed)"}.get(status, "")
    return fail(
        "one-click",
        where,
        f"answered {status}{what}: the address must reach nurture's /unsubscribe/ for POST; "
        "check NURTURE_BASE_URL and what your proxy forwards",
    )
