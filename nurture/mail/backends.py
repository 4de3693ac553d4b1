"""The one mail interface. A backend is picked by NURTURE_MAIL_URL:

    smtp://user:pass@host:587?starttls=true   smtps://host:465   file://./outbox   memory://

A backend is used as a context manager around a batch, so SMTP keeps one connection for
the whole batch. send() raises TransientMailError (try again later) or PermanentMailError
(this address will not accept mail); callers decide what that means for the subscriber.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

from nurture.mail.message import envelope_of, wire_bytes


class MailError(Exception):
    pass


class TransientMailError(MailError):
    pass


class PermanentMailError(MailError):
    """The server will not take this message. `bounce` says whether the fault is the
    address (the subscriber must stop receiving mail) or something else, such as our own
    authentication being refused (5.7.x), where marking readers bounced would be wrong."""

    def __init__(self, message: str, *, bounce: bool = False) -> None:
        super().__init__(message)
        self.bounce = bounce


class MailBackend(Protocol):
    def __enter__(self) -> MailBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, msg: EmailMessage) -> None: ...


class _NoConnection:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class MemoryBackend(_NoConnection):
    """Keeps messages in a process-wide list (tests)."""

    outbox: list[EmailMessage] = []
    _lock = threading.Lock()

    def send(self, msg: EmailMessage) -> None:
        with self._lock:
            self.outbox.append(msg)


class FileBackend(_NoConnection):
    """One .eml file per message, plus the HTML part beside it to open in a browser."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, msg: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Message-IDs are stable per subscriber and step, so a resend overwrites its file.
        name = (msg["Message-ID"] or "message").strip("<>").split("@")[0]
        tmp = self.directory / f".{name}.eml.tmp"
        tmp.write_bytes(wire_bytes(msg))
        tmp.replace(self.directory / f"{name}.eml")
        html = msg.get_body(("html",))
        if html is not None:
            (self.directory / f"{name}.html").write_text(
                html.get_content(),
                encoding="utf-8",
            )


class SMTPBackend:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool,
        starttls: bool,
        username: str | None,
        password: str | None,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self.implicit_tls, self.starttls = implicit_tls, starttls
        self.username, self.password = username, password
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> Self:
        try:
            if self.implicit_tls:
                ctx = ssl.create_default_context()
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ctx
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    conn.starttls(context=ssl.create_default_context())
            # Commands are small writes separated by our database work: without NODELAY,
            # Nagle's algorithm holds each one back waiting for the previous ACK.
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # Our configuration is wrong, not the reader's address: never a bounce.
            raise TransientMailError(f"SMTP login refused: {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientMailError(f"cannot reach SMTP server: {type(exc).__name__}") from None
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                self._conn.close()
            self._conn = None

    def send(self, msg: EmailMessage) -> None:
        if self._conn is None:
            raise TransientMailError("no SMTP connection (lost earlier in this batch)")
        from_addr, to_addrs = envelope_of(msg)
        options = self._smtputf8_options(msg)
        try:
            refused = self._conn.sendmail(from_addr, to_addrs, wire_bytes(msg), options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _by_code(code, text, "recipient refused", at_rcpt=True) from None
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, "message refused") from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The connection is gone: the rest of the batch must not use it.
            self._conn.close()
            self._conn = None
            raise TransientMailError(f"connection lost: {type(exc).__name__}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _by_code(code, text, "recipient refused", at_rcpt=True)

    def _smtputf8_options(self, msg: EmailMessage) -> list[str]:
        """["SMTPUTF8"] for a message to an international address, when the server offers
        it. A server that does not cannot deliver that one message, ever: it fails alone,
        permanently, and the reader is not marked bounced (their address is fine)."""
        if not getattr(msg, "smtputf8", False):
            return []
        assert self._conn is not None
        try:
            self._conn.ehlo_or_helo_if_needed()
        except (OSError, smtplib.SMTPException) as exc:
            self._conn.close()
            self._conn = None
            raise TransientMailError(f"connection lost: {type(exc).__name__}") from None
        if not self._conn.has_extn("smtputf8"):
            raise PermanentMailError(
                "the mail server does not offer SMTPUTF8, which this international address needs"
            )
        return ["SMTPUTF8"]


_ENHANCED = re.compile(rb"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _by_code(code: int, text: bytes | str, what: str, *, at_rcpt: bool = False) -> MailError:
    # Only the code and the enhanced status go into the error: the server's text often
    # repeats the address, which must not reach our logs.
    raw = text.encode() if isinstance(text, str) else text or b""
    enhanced = _ENHANCED.search(raw)
    status = enhanced.group(0).decode() if enhanced else ""
    summary = f"{what}: {code} {status}".rstrip()
    if 400 <= code < 500:
        return TransientMailError(summary)
    # 5.1.x is a bad mailbox; without an enhanced status, a refusal at RCPT means the same.
    # 5.7.x (policy, authentication, DMARC) and the rest are about us, not the reader.
    bounce = enhanced.group(2) == b"1" if enhanced else at_rcpt and code in {550, 551, 553}
    return PermanentMailError(summary, bounce=bounce)


def backend_from_url(url: str) -> MailBackend:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryBackend()
    if parts.scheme == "file":
        # file://./outbox is relative to the working directory; file:///var/mail/x absolute.
        return FileBackend(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme in {"smtp", "smtps"}:
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["false"])[0].lower() in {"1", "true", "yes"}
        implicit = parts.scheme == "smtps"
        return SMTPBackend(
            parts.hostname or "localhost",
            parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=starttls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", ["30"])[0]),
        )
    raise ValueError(f"unknown mail scheme {parts.scheme!r}")


def get_backend() -> MailBackend:
    from nurture.config import get_settings

    return backend_from_url(get_settings().mail_url)


__all__ = [
    "MailBackend",
    "MailError",
    "PermanentMailError",
    "TransientMailError",
    "backend_from_url",
    "get_backend",
]
