"""The one mail interface. A backend is picked by NURTURE_MAIL_URL:

    smtp://user:pass@host:587?starttls=true   smtps://host:465   file://./outbox   memory://

A backend is used as a context manager around a batch, so SMTP keeps one connection for
the whole batch. send() raises TransientMailError (try again later) or PermanentMailError
(this address will not accept mail); callers decide what that means for the subscriber.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit


class MailError(Exception):
    pass


class TransientMailError(MailError):
    pass


class PermanentMailError(MailError):
    pass


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
        tmp.write_bytes(msg.as_bytes())
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
        from_addr = parseaddr(str(msg["From"]))[1]
        to_addrs = [parseaddr(str(a))[1] for a in msg.get_all("To", [])]
        try:
            refused = self._conn.send_message(msg, from_addr, to_addrs)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            raise _by_code(code, "recipient refused") from None
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, "message refused") from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # The connection is gone: the rest of the batch must not use it.
            self._conn.close()
            self._conn = None
            raise TransientMailError(f"connection lost: {type(exc).__name__}") from None
        if refused:
            code = next(iter(refused.values()))[0]
            raise _by_code(code, "recipient refused")


def _by_code(code: int, what: str) -> MailError:
    if 400 <= code < 500:
        return TransientMailError(f"{what}: {code}")
    return PermanentMailError(f"{what}: {code}")


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
