"""`nurture operators ...` and `nurture audit`: who may use the dashboard, and what they did."""

from __future__ import annotations

import click

from nurture.admin.services import (
    add_operator,
    audit_log,
    cli_actor,
    list_operators,
    remove_operator,
    reset_operator,
)
from nurture.cli.output import emit, json_option, say
from nurture.clock import now
from nurture.db import reading, transaction


def register(cli: click.Group) -> None:
    cli.add_command(operators)
    cli.add_command(audit)


@click.group()
def operators() -> None:
    """Who may log in to the dashboard at /admin (it answers 404 until there is one).

    Example: nurture operators add robin --email robin@example.org
    """


def _print_link(url: str) -> None:
    say(url)
    click.echo(
        "Open it within 15 minutes to choose a password and set up the second factor; "
        "it works once.",
        err=True,
    )


@operators.command("add")
@click.argument("name")
@click.option("--email", "email", required=True, help="Their address (kept for the record).")
def add(name: str, email: str) -> None:
    """Add an operator and print their one-time setup link (valid 15 minutes).

    Example: nurture operators add robin --email robin@example.org
    """
    with transaction() as s:
        url = add_operator(s, name, email, by=cli_actor())
    _print_link(url)


@operators.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every operator: whether they finished setting up, second factor, last login.

    Example: nurture operators list --json
    """
    with reading() as s:
        rows = [r.as_dict() for r in list_operators(s, now())]
    columns = ["name", "email", "state", "second_factor", "created_at", "last_login_at"]
    emit(rows, columns, as_json, "operators")


@operators.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove an operator: their sessions end at once. The audit log keeps their name.

    Example: nurture operators remove robin
    """
    with transaction() as s:
        remove_operator(s, name, by=cli_actor())
    say(f"removed {name}; their sessions have ended")


@operators.command("reset")
@click.argument("name")
def reset(name: str) -> None:
    """Print a new setup link for an operator; their password, second factor and sessions
    stop working now.

    Example: nurture operators reset robin
    """
    with transaction() as s:
        url = reset_operator(s, name, by=cli_actor())
    _print_link(url)


@click.command()
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@json_option
def audit(limit: int, as_json: bool) -> None:
    """What operators did, newest first: who, what, on which person (by id), when.

    Example: nurture audit --json
    """
    with reading() as s:
        rows = [r.as_dict() for r in audit_log(s, limit)]
    emit(rows, ["at", "operator", "action", "subscriber_id", "target", "via"], as_json, "audit")
