"""The mail backends, one per kind of NURTURE_MAIL_URL (their interface: nurture/interfaces.py):

    smtp://user:pass@host:587?starttls=true   smtps://host:465   file://./outbox   memory://

A backend is used as a context manager around a batch, so SMTP keeps one connection for
the whole batch (opened on the first send, and again after a 421 or a drop). send() raises
TransientMailError (this message later), ConnectionLostError (this server later: the
connection is gone, the next send() opens a new one) or PermanentMailError (this address
will not accept mail); callers decide what that means for the subscriber and the batch.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from nurture.context import current
from nurture.interfaces import (
    ConnectionLostError,
    MailBackend,
    MailError,
    PermanentMailError,
    TransientMailError,
)
from nurture.mail.message import ascii_domain, envelope_of, wire_bytes


class _NoConnection:
    connections = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _is_to(msg: Message, address: str) -> bool:
    # The To header carries the domain IDNA-encoded (mail/message.py).
    wanted = {address.lower(), ascii_domain(address).lower()}
    return any(a.lower() in wanted for _, a in getaddresses(msg.get_all("To", [])))


class MemoryBackend(_NoConnection):
    """Keeps messages in a list of its own (tests): a runtime holds one MemoryBackend, so
    each test's runtime has its own outbox."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, msg: EmailMessage) -> None:
        with self._lock:
            self.outbox.append(msg)

    def forget(self, address: str) -> list[str]:
        return []  # what was handed to "the server", as a relay's own log: not kept by us


class FileBackend(_NoConnection):
    """One .eml file per message, plus the HTML part beside it to open in a browser."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def file_for(self, msg: EmailMessage) -> Path:
        """The .eml a message is written to. Message-IDs are stable per subscriber and step,
        so a resend overwrites its file."""
        name = (msg["Message-ID"] or "message").strip("<>").split("@")[0]
        return self.directory / f"{name}.eml"

    def send(self, msg: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        eml = self.file_for(msg)
        tmp = eml.with_name(f".{eml.name}.tmp")
        tmp.write_bytes(wire_bytes(msg))
        tmp.replace(eml)
        html = msg.get_body(("html",))
        if html is not None:
            eml.with_suffix(".html").write_text(html.get_content(), encoding="utf-8")

    def forget(self, address: str) -> list[str]:
        """Every .eml to `address` and the .html beside it, deleted. OSError when a file
        cannot be (the caller names what is left)."""
        removed: list[str] = []
        for eml in sorted(self.directory.glob("*.eml")) if self.directory.is_dir() else []:
            with eml.open("rb") as f:
                headers = BytesHeaderParser().parse(f)
            if not _is_to(headers, address):
                continue
            for path in (eml, eml.with_suffix(".html")):
                if path.exists():
                    path.unlink()
                    removed.append(str(path))
        return removed


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
        self.connections = 0

    def __enter__(self) -> Self:
        # The connection opens on the first send(): a failure to connect is then one more
        # "this server later" that the batch loop handles like a connection dropped midway.
        self.connections = 0
        return self

    def _connect(self) -> smtplib.SMTP:
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
            conn.ehlo_or_helo_if_needed()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # Our configuration is wrong, not the reader's address: never a bounce.
            raise ConnectionLostError(
                f"SMTP login refused: {exc.smtp_code}", at_connect=True
            ) from None
        except smtplib.SMTPConnectError as exc:
            # A 421 (or 554) greeting: the server is there but will not talk to us now.
            raise ConnectionLostError(
                f"SMTP server refused the connection: {exc.smtp_code}",
                throttle=exc.smtp_code == 421,
                at_connect=True,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionLostError(
                f"cannot reach SMTP server: {type(exc).__name__}", at_connect=True
            ) from None
        return conn

    def __exit__(self, *exc: object) -> None:
        self._drop(polite=True)

    def _drop(self, *, polite: bool = False) -> None:
        if self._conn is not None:
            try:
                if polite:
                    self._conn.quit()
                else:
                    self._conn.close()
            except (OSError, smtplib.SMTPException):
                self._conn.close()
            self._conn = None

    def forget(self, address: str) -> list[str]:
        return []  # a relay's copies are the relay's; nothing is kept here

    def send(self, msg: EmailMessage) -> None:
        if self._conn is None:
            self._conn = self._connect()
            self.connections += 1
        conn = self._conn
        from_addr, to_addrs = envelope_of(msg)
        data = wire_bytes(msg)
        options = self._smtputf8_options(msg)
        try:
            if not options and _pipelinable(conn, from_addr, to_addrs):
                _pipelined_send(conn, from_addr, to_addrs, data)
            else:
                refused = conn.sendmail(from_addr, to_addrs, data, options)
                if refused:
                    code, text = next(iter(refused.values()))
                    raise _by_code(code, text, "recipient refused", at_rcpt=True)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            error = _by_code(code, text, "recipient refused", at_rcpt=True)
        except smtplib.SMTPResponseException as exc:
            error = _by_code(exc.smtp_code, exc.smtp_error, "message refused")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            error = ConnectionLostError(f"connection lost: {type(exc).__name__}")
        else:
            return
        if isinstance(error, ConnectionLostError) or conn.sock is None:
            # smtplib closes the socket itself after a 421; either way the next send()
            # starts on a fresh connection instead of failing on this dead one.
            self._drop()
            if not isinstance(error, ConnectionLostError):
                error = ConnectionLostError(str(error), throttle=error_throttles(error))
        raise error

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
            self._drop()
            raise ConnectionLostError(f"connection lost: {type(exc).__name__}") from None
        if not self._conn.has_extn("smtputf8"):
            raise PermanentMailError(
                "the mail server does not offer SMTPUTF8, which this international address needs"
            )
        return ["SMTPUTF8"]


def error_throttles(error: MailError) -> bool:
    return isinstance(error, TransientMailError) and error.throttle


def _pipelinable(conn: smtplib.SMTP, from_addr: str, to_addrs: list[str]) -> bool:
    # International addresses go through smtplib's own path (SMTPUTF8 negotiation).
    return bool(conn.has_extn("pipelining")) and all(a.isascii() for a in (from_addr, *to_addrs))


# An address smtplib.quoteaddr would give back unchanged inside <>: its parse (email.utils)
# is a twentieth of a message's time, for addresses already in this plain shape.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def dot_stuffed(data: bytes) -> bytes:
    """Every line that begins with a dot gets another (RFC 5321 4.5.2). Our HTML has many
    (the layout's CSS rules): bytes.replace does it at a tenth of a multiline regex's cost."""
    body = data.replace(b"\n.", b"\n..")
    return b"." + body if body.startswith(b".") else body


def _quoted(address: str) -> str:
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


def _pipelined_send(conn: smtplib.SMTP, from_addr: str, to_addrs: list[str], data: bytes) -> None:
    """MAIL, RCPT and DATA in one write, then the body (RFC 2920): two round trips per
    message instead of four, which at hundreds of messages a second is most of the wait.
    Raises the same exceptions smtplib.sendmail does."""
    size = f" SIZE={len(data)}" if conn.has_extn("size") else ""
    commands = [f"MAIL FROM:{_quoted(from_addr)}{size}"]
    commands += [f"RCPT TO:{_quoted(a)}" for a in to_addrs]
    commands.append("DATA")
    if any("\r" in c or "\n" in c for c in commands):
        raise ValueError("line break in an address")  # never inject an SMTP command
    conn.send("".join(c + "\r\n" for c in commands))
    replies: list[tuple[int, bytes]] = []
    for _ in commands:  # in order; a 421 ends the connection, nothing follows it
        code, text = conn.getreply()
        if code == 421:
            conn.close()
            raise smtplib.SMTPResponseException(code, text)
        replies.append((code, text))
    mail, rcpts, data_reply = replies[0], replies[1:-1], replies[-1]
    if data_reply[0] == 354:
        body = dot_stuffed(data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        conn.send(body + b".\r\n")
        code, text = conn.getreply()
        if code == 421:
            conn.close()
        if code != 250:
            raise smtplib.SMTPDataError(code, text)
    else:
        conn.rset()
    if mail[0] != 250:
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
    refused = {a: r for a, r in zip(to_addrs, rcpts, strict=True) if r[0] not in (250, 251)}
    if len(refused) == len(to_addrs):
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_reply[0] != 354:
        raise smtplib.SMTPDataError(*data_reply)
    if refused:
        code, text = next(iter(refused.values()))
        raise _by_code(code, text, "recipient refused", at_rcpt=True)


_ENHANCED = re.compile(rb"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _by_code(code: int, text: bytes | str, what: str, *, at_rcpt: bool = False) -> MailError:
    # Only the code and the enhanced status go into the error: the server's text often
    # repeats the address, which must not reach our logs.
    raw = text.encode() if isinstance(text, str) else text or b""
    enhanced = _ENHANCED.search(raw)
    status = enhanced.group(0).decode() if enhanced else ""
    summary = f"{what}: {code} {status}".rstrip()
    if 400 <= code < 500:
        return TransientMailError(summary, throttle=_is_throttling(code, raw))
    # 5.1.x is a bad mailbox; without an enhanced status, a refusal at RCPT means the same.
    # 5.7.x (policy, authentication, DMARC) and the rest are about us, not the reader.
    bounce = enhanced.group(2) == b"1" if enhanced else at_rcpt and code in {550, 551, 553}
    return PermanentMailError(summary, bounce=bounce)


# Wording relays use when they cap a sender's rate: Amazon SES "454 Throttling failure:
# Maximum sending rate exceeded" (and its bare "454 4.7.0"), Gmail "421 4.7.28 ... unusual
# rate", Microsoft "4.7.500 Server busy", "too many connections/messages". Only 421 and 454
# count: a 450/451 on one recipient ("mailbox busy", greylisting) is about that message,
# not our pace; a 421 that says nothing of rates is a connection lost, not a slow-down.
_THROTTLING = re.compile(
    rb"rate|throttl|too many|too fast|slow down|limit|exceed|busy|4\.7\.28|4\.7\.500",
    re.IGNORECASE,
)


def _is_throttling(code: int, text: bytes) -> bool:
    if code == 454 and text.lstrip().startswith(b"4.7.0"):
        return True
    return code in {421, 454} and bool(_THROTTLING.search(text))


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
    """A backend for one batch, from the current runtime (NURTURE_MAIL_URL)."""
    return current().mail()


__all__ = [
    "ConnectionLostError",
    "MailBackend",
    "MailError",
    "PermanentMailError",
    "TransientMailError",
    "backend_from_url",
    "get_backend",
]
