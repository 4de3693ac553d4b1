"""`nurture events ...`: the event webhooks sent to the practice's own systems."""

from __future__ import annotations

import click

from nurture.cli.output import emit, json_option
from nurture.db import reading
from nurture.events.models import OutboxStatus
from nurture.events.webhooks import list_events


def register(cli: click.Group) -> None:
    cli.add_command(events)


@click.group()
def events() -> None:
    """Event webhooks (NURTURE_EVENTS_URL): what was sent, what waits for a retry.

    Example: nurture events list --status failed
    """


@events.command("list")
@click.option("--status", type=click.Choice([s.value for s in OutboxStatus]), help="Only these.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@json_option
def events_list(status: str | None, limit: int, as_json: bool) -> None:
    """List recent events, newest first: type, status, attempts, next try, last error.
    Bodies are not shown (they name people) and are erased once delivered or given up on.

    Example: nurture events list --status pending --json
    """
    with reading() as s:
        rows = list_events(s, status, limit)
    columns = ["id", "type", "status", "attempts", "created_at", "next_attempt_at", "error"]
    emit(rows, columns, as_json, "events")
