"""`nurture subscribers ...`: the people on the list and their data."""

from __future__ import annotations

import click

from nurture.db import transaction
from nurture.sequences.services import get_sequence
from nurture.subscribers.services import add_subscriber


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)


@click.group()
def subscribers() -> None:
    """Add, inspect, export, unsubscribe and forget subscribers."""


@subscribers.command("add")
@click.argument("email")
@click.option("--sequence", "slug", required=True, help="Sequence slug to enrol them in.")
@click.option("--name", "first_name", help="First name, used in greetings.")
@click.option("--timezone", help="IANA time zone, e.g. America/Chicago (default: the sequence's).")
@click.option(
    "--confirmed",
    is_flag=True,
    help="They already confirmed elsewhere: start the sequence now, no confirmation email.",
)
def add(
    email: str, slug: str, first_name: str | None, timezone: str | None, confirmed: bool
) -> None:
    """Add one subscriber to a sequence.

    Example: nurture subscribers add ann@example.com --sequence partner-refuses-therapy --confirmed
    """
    with transaction() as s:
        sub = add_subscriber(
            s,
            email,
            get_sequence(s, slug),
            first_name=first_name,
            timezone=timezone,
            confirmed=confirmed,
        )
        status = sub.status
    click.echo(f"added to {slug} ({status})")
