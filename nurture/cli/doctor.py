"""`nurture doctor`: one line per check of the mail setup, ok / warn / fail and what to
change (the checks: nurture/doctor/)."""

from __future__ import annotations

import click
from rich.text import Text

from nurture.cli.output import clean, console, is_terminal, json_option, print_json
from nurture.context import current
from nurture.db import transaction
from nurture.doctor.checks import Probe, run_doctor, sender_addresses
from nurture.doctor.lookup import Lookup, resolver_for
from nurture.doctor.report import Finding, Status
from nurture.errors import NurtureError

STYLES = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def register(cli: click.Group) -> None:
    cli.add_command(doctor)


@click.command()
@click.option(
    "--nameserver",
    metavar="IP[:PORT]",
    help="Ask this DNS server instead of the system's (e.g. your DNS host's, right after "
    "a change, before caches catch up).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=5.0,
    show_default=True,
    help="Seconds to wait for each DNS server, relay or web answer.",
)
@json_option
def doctor(nameserver: str | None, timeout: float, as_json: bool) -> None:
    """Check the mail setup: SPF, DKIM and DMARC of every sequence's From domain, the relay's
    STARTTLS and certificate, the https base URL and its one-click unsubscribe, the keys.

    One line per check: ok, warn or fail, and what to change. Exits 1 when any check fails.
    Nothing is sent and no one is unsubscribed.

    Example: nurture doctor --nameserver 1.1.1.1
    """
    try:
        resolver = resolver_for(nameserver, timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--nameserver") from None
    with transaction() as s:
        senders = sender_addresses(s)
    probe = Probe(Lookup(resolver), timeout=timeout)
    findings = run_doctor(current().settings, probe, senders)
    if as_json:
        print_json([f.as_dict() for f in findings])
    else:
        show(findings)
    failed = sum(f.status == Status.FAIL for f in findings)
    if failed:
        raise NurtureError(
            f"{failed} of {len(findings)} checks failed: change what their lines say, then "
            "run nurture doctor again"
        )


def show(findings: list[Finding]) -> None:
    """`fail  spf    example.org: no SPF record: publish ...`, the check names aligned."""
    width = max(len(f.check) for f in findings)
    for f in findings:
        about = f"{f.subject}: " if f.subject else ""
        rest = clean(f"{f.check.ljust(width)}  {about}{f.message}")
        if is_terminal():
            line = Text(f.status.value.ljust(4), style=STYLES[f.status])
            line.append(f"  {rest}")
            console.print(line, soft_wrap=True)
        else:
            click.echo(f"{f.status.value.ljust(4)}  {rest}")
