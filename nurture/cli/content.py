"""`nurture preview` and `nurture send-test`: see a step exactly as a reader would get it.

Both build the message with the same compose() the workers use, so what you preview is
what is sent. A test send is marked ("[TEST]" subject, X-Nurture-Test header) and is never
recorded as a delivery: it cannot advance or disturb anyone's sequence.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import click
from sqlalchemy.orm import Session

from nurture import tokens
from nurture.cli.output import clean, say
from nurture.db import reading
from nurture.delivery.compose import compose
from nurture.errors import NotFound, NurtureError
from nurture.mail.backends import FileBackend, MailError, get_backend
from nurture.sequences.models import Sequence, Step
from nurture.sequences.services import get_sequence, live_steps
from nurture.subscribers.addresses import find_subscriber, normalize_email

# Shown when no subscriber is named; the greeting then takes its no-name form.
SAMPLE_ADDRESS = "reader@example.com"
SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "Message-ID", "List-Unsubscribe")


def register(cli: click.Group) -> None:
    cli.add_command(preview)
    cli.add_command(send_test)


def find_step(s: Session, seq: Sequence, name: str) -> Step:
    """A step by its key, or by its number in the sequence (1 is the first)."""
    steps = live_steps(s, seq.id)
    for step in steps:
        if step.key == name:
            return step
    if name.isdigit() and 1 <= int(name) <= len(steps):
        return steps[int(name) - 1]
    keys = ", ".join(step.key for step in steps)
    raise NotFound(f"no step {name!r} in {seq.slug} (steps: {keys})")


def _message_for(slug: str, step_name: str, address: str | None, *, test: bool) -> EmailMessage:
    with reading() as s:
        seq = get_sequence(s, slug)
        step = find_step(s, seq, step_name)
        sub = find_subscriber(s, address) if address else None
        if address and sub is None and not test:
            raise NotFound(f"no subscriber {address} (leave out --email for a sample reader)")
        return compose(
            seq,
            step,
            # A test's unsubscribe link names no one: pressing it in a test email must not
            # unsubscribe the real reader it was rendered for.
            public_id=sub.public_id if sub and not test else tokens.NO_ONE,
            email=sub.email if sub else normalize_email(address or SAMPLE_ADDRESS),
            first_name=sub.first_name if sub else None,
            test=test,
        )


def _part(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    if not isinstance(part, EmailMessage):
        raise NurtureError(f"the message has no text/{subtype} part")
    return str(part.get_content())


@click.command("preview")
@click.argument("slug")
@click.argument("step")
@click.option("--email", "address", help="Render for this subscriber: their name and links.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write the HTML part to FILE (open it in a browser).",
)
@click.option("--text", "text_only", is_flag=True, help="Print only the plain-text part.")
def preview(
    slug: str, step: str, address: str | None, html_file: Path | None, text_only: bool
) -> None:
    """Render one step of a sequence: headers and the plain-text part.

    STEP is the step's key or its number (1 is the first).

    Example: nurture preview partner-refuses-therapy welcome --html /tmp/welcome.html
    """
    msg = _message_for(slug, step, address, test=False)
    if html_file:
        try:
            html_file.write_text(_part(msg, "html"), encoding="utf-8")
        except OSError as exc:
            raise NurtureError(f"{html_file}: cannot write ({exc.strerror})") from None
    if not text_only:
        for name in SHOWN_HEADERS:
            if msg[name]:
                say(f"{name}: {msg[name]}")
        size = len(msg.as_bytes())
        click.echo(
            f"Size: {size / 1024:.1f} KB" + (f", HTML written to {html_file}" if html_file else "")
        )
        click.echo()
    # The body holds the reader's name: cleaned like every value that reaches a terminal.
    click.echo(clean(_part(msg, "plain"), keep_newlines=True), nl=False)


@click.command("send-test")
@click.argument("slug")
@click.argument("step")
@click.option("--to", "address", required=True, help="Where to send the test.")
def send_test(slug: str, step: str, address: str) -> None:
    """Send one rendered step now, marked as a test ("[TEST]" subject) and not recorded as a
    delivery. It has its own Message-ID (and file, with file:// mail), and its unsubscribe
    link unsubscribes no one.

    Example: nurture send-test partner-refuses-therapy welcome --to me@example.org
    """
    msg = _message_for(slug, step, address, test=True)
    written = ""
    try:
        with get_backend() as backend:
            backend.send(msg)
            if isinstance(backend, FileBackend):  # nothing left the machine: say where it is
                written = f"; written to {backend.file_for(msg)}"
    except MailError as exc:
        raise NurtureError(f"test send failed: {exc}") from None
    say(f"sent test of {slug} step {step} to {address} (Message-ID {msg['Message-ID']}){written}")
