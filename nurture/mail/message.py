"""Building the MIME message. Every header goes through the email library (never string
formatting), so a first name holding a line break cannot inject a header."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import EmailMessage, Message
from email.policy import Compat32
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import urlsplit

import idna

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
    secret: str, public_id: str, sequence: str, step: str, domain: str, *, opaque: bool = False
) -> str:
    # Stable per subscriber and step, so a retried send is recognisably the same message,
    # yet keyed so the ID reveals nothing about the subscriber. It names the person by their
    # public id, never a row number that another person could get later. `opaque` (discreet
    # mode) leaves out the sequence and step names too: mail clients show Message-IDs.
    digest = hmac.new(
        secret.encode(), f"{public_id}:{sequence}:{step}".encode(), hashlib.sha256
    ).hexdigest()[:32]
    return f"<{digest}@{domain}>" if opaque else f"<{sequence}.{step}.{digest}@{domain}>"


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1]


def _display(name: str | None) -> str:
    # Collapse whitespace: names come from forms, and a newline must never reach a header.
    return " ".join((name or "").split())


def ascii_domain(email: str) -> str:
    """The address with its domain IDNA-encoded (user@exämple.com -> user@xn--exmple-cua.com);
    only the local part may then still need SMTPUTF8."""
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def needs_smtputf8(email: str) -> bool:
    return not ascii_domain(email).isascii()


def _address(name: str | None, email: str) -> str:
    # formataddr quotes specials and RFC 2047-encodes a non-ASCII name, but refuses a
    # non-ASCII address: that one is written as UTF-8 (RFC 6532) and sent with SMTPUTF8.
    email = ascii_domain(email)
    if email.isascii():
        return formataddr((_display(name), email), charset="utf-8")
    shown = formataddr((_display(name), "x@x"), charset="utf-8")
    return f"{shown[: -len('<x@x>')]}<{email}>" if _display(name) else email


def _text(value: str) -> str:
    value = _display(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=998).encode()


# Messages are assembled and serialised with the compat32 policy: its headers are plain
# strings, four times cheaper to build and flatten than the modern policy's parsed objects,
# which matters at hundreds of messages a second. Long unbroken values (the unsubscribe URL)
# stay literal with a 998-column limit (RFC 5322); the default 78 would wrap them in
# encoded-words that mail clients do not decode in List-Unsubscribe.
class _FastCompat32(Compat32):
    """compat32, minus its cost for the common header: a plain ASCII value that already
    fits on one line is written as it is, which is exactly what the full folding code
    would produce for it (it is a third of a message's serialisation time otherwise)."""

    def fold_binary(self, name: str, value: str) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= (self.max_line_length or 998)
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


ASSEMBLY_POLICY = _FastCompat32(max_line_length=998)
# What goes on the wire, is DKIM-signed and written to .eml files: CRLF line ends.
WIRE_POLICY = ASSEMBLY_POLICY.clone(linesep="\r\n")
# The same for a message to an international address: UTF-8 headers as they are (RFC 6532);
# the modern policy writes unchanged the strings compat32 assembled.
UTF8_WIRE_POLICY = default_policy.clone(utf8=True, linesep="\r\n", max_line_length=998)
# What callers and tests read the finished message with (get_body, get_content, ...).
READ_POLICY = default_policy.clone(max_line_length=998)


class OutgoingMessage(EmailMessage):
    """An EmailMessage that remembers its envelope, so the sender need not parse its own
    From and To headers back (a measurable cost at hundreds of messages a second)."""

    envelope_from: str = ""
    envelope_to: tuple[str, ...] = ()
    # An address with a non-ASCII local part: headers in UTF-8, sent only with SMTPUTF8.
    smtputf8: bool = False
    # Kept as built, so nothing on the way out parses the headers back (the modern policy's
    # header parsing costs more than building them did).
    message_id: str = ""
    boundary: str = ""


def message_id_of(msg: Message) -> str:
    if isinstance(msg, OutgoingMessage) and msg.message_id:
        return msg.message_id
    return str(msg["Message-ID"])


def envelope_of(msg: Message) -> tuple[str, list[str]]:
    if isinstance(msg, OutgoingMessage) and msg.envelope_from:
        return msg.envelope_from, list(msg.envelope_to)
    return parseaddr(str(msg["From"]))[1], [parseaddr(str(a))[1] for a in msg.get_all("To", [])]


def wire_bytes(msg: Message) -> bytes:
    """The exact bytes to send, sign and store."""
    if getattr(msg, "smtputf8", False):
        return msg.as_bytes(policy=UTF8_WIRE_POLICY)
    if isinstance(msg, OutgoingMessage):
        ours = _our_wire_bytes(msg)
        if ours is not None:
            return ours
    return msg.as_bytes(policy=WIRE_POLICY)


_NEWLINES = re.compile(r"\r\n|\r|\n")


def _wire_headers(m: Message) -> list[bytes]:
    return [WIRE_POLICY.fold_binary(name, value) for name, value in m.raw_items()]


class _TextPart(EmailMessage):
    """A text part that keeps its payload as set, for _our_wire_bytes: reading it back
    through get_payload() parses the Content-Transfer-Encoding header with the reading
    policy first (that parse cost a twentieth of a message's time)."""

    payload_as_set: object = None

    def set_payload(self, payload: Any, charset: Any = None) -> None:
        super().set_payload(payload, charset)
        self.payload_as_set = payload if charset is None else None


def _our_wire_bytes(msg: OutgoingMessage) -> bytes | None:
    """What the email library's generator writes for the shape build_message makes (a
    multipart of ASCII text parts), byte for byte, written directly: the generator's
    line-by-line writes were a third of a message's cost. None for any other shape, which
    then goes through the generator. tests/test_message_encoding.py holds the two equal."""
    parts = msg.get_payload()
    boundary = msg.boundary
    content_type = next((v for k, v in msg.raw_items() if k.lower() == "content-type"), "")
    if not isinstance(parts, list) or not boundary or f'boundary="{boundary}"' not in content_type:
        return None
    if msg.preamble is not None or msg.epilogue is not None:
        return None
    delimiter = f"--{boundary}".encode("ascii")
    out = [*_wire_headers(msg), b"\r\n", delimiter, b"\r\n"]
    for i, part in enumerate(parts):
        payload = part.payload_as_set if isinstance(part, _TextPart) else None
        if part.is_multipart() or not isinstance(payload, str) or not payload.isascii():
            return None
        if i:
            out += [b"\r\n", delimiter, b"\r\n"]
        out += _wire_headers(part)
        # The same as _NEWLINES.sub for text without a carriage return, at a tenth the cost.
        crlf = (
            payload.replace("\n", "\r\n") if "\r" not in payload else _NEWLINES.sub("\r\n", payload)
        )
        out += [b"\r\n", crlf.encode("ascii")]
    out += [b"\r\n", delimiter, b"--\r\n"]
    return b"".join(out)


def _text_part(subtype: str, body: str) -> EmailMessage:
    part = _TextPart(policy=ASSEMBLY_POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    # binascii's C encoder (lines kept within 76 characters: _b2a_qp) is far faster than the
    # pure-Python one the policy would use.
    part.set_payload(quoted_printable(body.encode("utf-8")).decode("ascii"))
    return part


def quoted_printable(data: bytes) -> bytes:
    """binascii.b2a_qp, line by line with the lines remembered: it encodes each line on its
    own (without a carriage return anywhere, which would switch every line end to CRLF),
    and most lines of an email are the layout's, the same in every message. Encoding the
    whole HTML was a twentieth of a message's time."""
    if b"\r" in data:
        return _b2a_qp(data)
    *lines, last = data.split(b"\n")
    # The last line as it is: the encoder treats the end of the data unlike a line end.
    return b"".join([*map(_qp_line, lines), _qp_long(last, b"") or _b2a_qp(last)])


def _b2a_qp(data: bytes) -> bytes:
    """binascii.b2a_qp within RFC 2045's 76 characters a line (SpamAssassin scores longer
    ones, MIME_QP_LONG_LINE). binascii writes 77 or 78 when a blank that ends a line must
    be escaped at the edge of the line: such a line gets one more soft break."""
    encoded = binascii.b2a_qp(data)
    lines = encoded.split(b"\n")
    if max(map(len, lines)) <= 76:
        return encoded
    out = []
    for line in lines:
        # With a carriage return in the data, binascii ends every line with CRLF.
        end = b"\r" if line.endswith(b"\r") else b""
        line = line.removesuffix(end)
        while len(line) > 76:
            # The break goes after 75 characters, or before an escape ("=XX") it would cut.
            cut = line.rfind(b"=", 73, 75)
            cut = 75 if cut == -1 else cut
            out.append(line[:cut] + b"=" + end)
            line = line[cut:]
        out.append(line + end)
    return b"\n".join(out)


def _qp_line(line: bytes) -> bytes:
    """One line and its line end."""
    return _qp_long(line, b"\n") or _qp_short(line + b"\n")


_qp_short = functools.lru_cache(maxsize=1024)(_b2a_qp)

# Where a long line of the layout is cut: MJML writes one before every Outlook-only block,
# a few hundred bytes apart, so the pieces between are the same in every reader's email
# but the few that hold the reader's own values.
_QP_CUT = b"<!--[if mso | IE]>"
_QP_LONG = 1024


def _qp_long(line: bytes, end: bytes) -> bytes | None:
    """A long line of the layout, encoded piece by piece with a soft line break between the
    pieces (RFC 2045: "=" at the end of an encoded line is removed in decoding, so the
    text is the same), each piece remembered; None for any other line. A reader's body and
    footer sit on two such lines, 7 KB that were encoded afresh for every email."""
    if len(line) < _QP_LONG or _QP_CUT not in line:
        return None
    first, *rest = line.split(_QP_CUT)
    pieces = [first, *(_QP_CUT + p for p in rest)]
    pieces[-1] += end
    encoded = list(map(_qp_short, pieces))
    # The "=" goes at the end of a piece's last line: that line must have room for it.
    if any(len(e) - e.rfind(b"\n") > 76 for e in encoded[:-1]):
        return None
    return b"=\n".join(encoded)


def build_message(
    env: Envelope, rendered: RenderedEmail, *, test: bool = False, date: datetime | None = None
) -> EmailMessage:
    msg = OutgoingMessage(policy=ASSEMBLY_POLICY)
    msg.envelope_from = ascii_domain(env.from_email)
    msg.envelope_to = (ascii_domain(env.to_email),)
    msg.smtputf8 = needs_smtputf8(env.to_email) or needs_smtputf8(env.from_email)
    msg["Subject"] = _text(("[TEST] " if test else "") + rendered.subject)
    msg["From"] = _address(env.from_name, env.from_email)
    msg["To"] = _address(env.to_name, env.to_email)
    if env.reply_to:
        msg["Reply-To"] = _address(None, env.reply_to)
    msg["Date"] = format_datetime(date or now())
    msg["Message-ID"] = msg.message_id = env.message_id
    msg["List-Id"] = f"<{env.list_id}>"
    unsubscribe = f"<{env.unsubscribe_url}>"
    if env.unsubscribe_mailto:
        unsubscribe += f", <mailto:{env.unsubscribe_mailto}>"
    msg["List-Unsubscribe"] = unsubscribe
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if test:
        msg["X-Nurture-Test"] = "yes"
    msg["MIME-Version"] = "1.0"
    # A boundary of our own: otherwise the generator makes one and scans the whole body
    # for it. "==" can never occur in quoted-printable text (every "=" there is followed by
    # two hex digits or a line break), so this one cannot collide with the parts.
    msg.boundary = f"=={secrets.token_hex(12)}=="
    msg["Content-Type"] = f'multipart/alternative; boundary="{msg.boundary}"'
    msg.set_payload([_text_part("plain", rendered.text), _text_part("html", rendered.html)])
    _maybe_dkim(msg, env.from_email)
    for m in (msg, *msg.iter_parts()):
        m.policy = READ_POLICY
    return msg


def _maybe_dkim(msg: EmailMessage, from_email: str) -> None:
    from nurture.context import current

    runtime = current()
    settings = runtime.settings
    if not settings.dkim_enabled:
        return
    # Imported here: dkimpy takes a noticeable time to import and most setups never sign.
    from nurture.mail import dkim

    assert settings.dkim_selector and settings.dkim_private_key  # dkim_enabled says so
    path = settings.dkim_private_key
    # Signed over the bytes SMTP will carry; the signing domain is the From domain (DMARC).
    msg["DKIM-Signature"] = dkim.signature(
        wire_bytes(msg),
        settings.dkim_selector,
        domain_of(from_email),
        # Read once per runtime, not per message.
        runtime.kept("dkim key", lambda: dkim.read_key(path)),
    )


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "localhost"
