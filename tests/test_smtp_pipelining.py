"""What the pipelined SMTP path puts on the wire arrives as built: lines that begin with a
dot survive the dot-stuffing, and an address too unusual for the plain fast path is quoted
the way smtplib quotes it."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from nurture.mail.backends import SMTPBackend, _quoted, dot_stuffed
from tests.support import free_port


class _Keeper:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def keeper() -> Any:
    handler = _Keeper()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _message(body: str, to: str = "reader@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "hello@example.org"
    msg["To"] = to
    msg["Subject"] = "dots"
    msg.set_content(body)
    return msg


@pytest.mark.parametrize(
    "body",
    [
        "no dot at a line start\n",
        ".a dot first of all\nthen text\n",
        "text\n.a dot after a line break\n..two dots\n.\n",
    ],
    ids=["none", "first", "later"],
)
def test_lines_beginning_with_a_dot_arrive_unchanged(keeper: Any, body: str) -> None:
    handler, port = keeper
    backend = SMTPBackend(
        "127.0.0.1", port, implicit_tls=False, starttls=False, username=None, password=None
    )
    with backend:
        backend.send(_message(body))
    (_, rcpts, content) = handler.received[0]
    assert rcpts == ["reader@example.com"]
    assert content.replace(b"\r\n", b"\n").endswith(body.encode())


def test_addresses_are_quoted_as_smtplib_quotes_them() -> None:
    import smtplib

    for address in [
        "reader@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.com",
        '"quoted local"@example.com',
        "Name <reader@example.com>",
        "",
    ]:
        assert _quoted(address) == smtplib.quoteaddr(address)


def test_dot_stuffing_is_the_rfc_rule() -> None:
    import re

    for data in [b"", b".", b"..", b"a\r\n.b", b".a\r\n.\r\n..c\r\n", b"a.b\n.c\r.d", b"\n\n."]:
        assert dot_stuffed(data) == re.sub(rb"(?m)^\.", b"..", data)
