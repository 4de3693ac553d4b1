"""Does the relay in NURTURE_MAIL_URL encrypt, with a certificate nurture will accept?

The mail backend (mail/backends.py) verifies the relay's certificate with the system's
authorities and its host name, and refuses to send otherwise; a relay without STARTTLS, or
a URL that does not ask for it, sends the login and every reader's address in the clear.
This opens the same kind of connection the backend opens, says EHLO and goes as far as the
TLS handshake: it never logs in and never sends a message.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nurture.doctor.report import Finding, fail, ok, warn

CHECK = "relay"
RENEW_DAYS = 14  # a certificate closer than this to its end gets a warning

# OpenSSL's verify codes worth putting in words (the rest keep OpenSSL's own).
_CERT_PROBLEMS = {
    10: "has expired",
    18: "is self-signed",
    19: "comes from an authority this machine does not trust (a self-signed root)",
    20: "is not signed by an authority this machine trusts",
    21: "is not signed by an authority this machine trusts",
    62: "is for another name",
    64: "is for another address",
}


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    starttls: bool  # smtp://...?starttls=true

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def relay_of(mail_url: str) -> Relay | None:
    """The relay NURTURE_MAIL_URL sends to; None for file:// and memory:// (no relay).
    Its user name and password are never kept: nothing here may print them."""
    parts = urlsplit(mail_url)
    if parts.scheme not in {"smtp", "smtps"}:
        return None
    implicit = parts.scheme == "smtps"
    starttls = parse_qs(parts.query).get("starttls", ["false"])[0].lower() in {"1", "true", "yes"}
    port = parts.port or (465 if implicit else 25)
    return Relay(parts.hostname or "localhost", port, implicit, starttls)


def no_relay(mail_url: str) -> Finding:
    where = "files in " + mail_url.removeprefix("file://") if mail_url.startswith("file:") else ""
    return warn(
        CHECK,
        "",
        f"there is no relay: NURTURE_MAIL_URL keeps mail here ({where or 'in memory'}), so "
        "nothing reaches readers; set it to your provider's smtp:// or smtps:// address to go live",
    )


def check_relay(relay: Relay, *, cafile: str | None, timeout: float) -> Finding:
    context = ssl.create_default_context(cafile=cafile)
    conn: smtplib.SMTP | None = None
    try:
        if relay.implicit_tls:
            conn = smtplib.SMTP_SSL(relay.host, relay.port, timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
            conn.ehlo()
            if not conn.has_extn("starttls"):
                return fail(
                    CHECK,
                    relay.where,
                    "the relay offers no STARTTLS, so the login and every message would cross "
                    "the network unencrypted: use your provider's port 587 with ?starttls=true, "
                    "or smtps:// on port 465",
                )
            conn.starttls(context=context)
        peer = conn.sock.getpeercert() if isinstance(conn.sock, ssl.SSLSocket) else None
    except ssl.SSLCertVerificationError as exc:
        return fail(CHECK, relay.where, _untrusted(relay, exc))
    except (OSError, smtplib.SMTPException) as exc:
        return fail(CHECK, relay.where, _unreachable(relay, exc, timeout))
    finally:
        _close(conn)
    return _verified(relay, peer)


def _verified(relay: Relay, peer: dict[str, Any] | None) -> Finding:
    if not relay.implicit_tls and not relay.starttls:
        return fail(
            CHECK,
            relay.where,
            "the relay offers STARTTLS but NURTURE_MAIL_URL does not ask for it, so nurture "
            "sends the login and every message unencrypted: add ?starttls=true to it",
        )
    how = "TLS (smtps)" if relay.implicit_tls else "STARTTLS"
    ends = ssl.cert_time_to_seconds(peer["notAfter"]) if peer and "notAfter" in peer else None
    if ends is None:
        return ok(CHECK, relay.where, f"{how} with a valid certificate for {relay.host}")
    days = int((ends - time.time()) // 86400)
    when = time.strftime("%Y-%m-%d", time.gmtime(ends))
    if days < RENEW_DAYS:
        text = f"{how} works, but the certificate ends in {days} days ({when}): ask your provider"
        return warn(CHECK, relay.where, text)
    return ok(CHECK, relay.where, f"{how} with a valid certificate for {relay.host} (until {when})")


def _untrusted(relay: Relay, exc: ssl.SSLCertVerificationError) -> str:
    problem = _CERT_PROBLEMS.get(exc.verify_code, f"was refused ({exc.verify_message})")
    if exc.verify_code in (62, 64):
        fix = (
            "use the host name your provider documents (the one its certificate names) in "
            f"NURTURE_MAIL_URL instead of {relay.host}"
        )
    else:
        fix = "use your provider's relay, or give this one a certificate from a public authority"
    return f"the relay's certificate {problem}, and nurture will not send through it: {fix}"


def _unreachable(relay: Relay, exc: Exception, timeout: float) -> str:
    # smtplib reports a timeout while reading the greeting as a disconnection.
    timed_out = isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc)
    if isinstance(exc, TimeoutError) or timed_out:
        reason = f"it did not answer within {timeout:g} s"
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        reason = "it closed the connection"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "the connection was refused"
    elif isinstance(exc, smtplib.SMTPResponseException):
        reason = f"it answered {exc.smtp_code}"
    else:
        reason = type(exc).__name__
    return (
        f"cannot talk to the relay at {relay.where} ({reason}): check the host and port in "
        "NURTURE_MAIL_URL and that this machine may connect out to it"
    )


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()
