"""`nurture schedule`, `nurture stats`, `nurture deliveries ...`: what will go out, how each
step does, and the sends that failed."""

from __future__ import annotations

from dataclasses import asdict, fields

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nurture.cli.output import clean, console, emit, is_terminal, json_option, print_json, tsv
from nurture.db import reading, transaction
from nurture.delivery.models import DeliveryStatus
from nurture.delivery.retry import retry_all_failed, retry_delivery
from nurture.reports import SequenceStats, StepStats, list_deliveries, schedule, stats
from nurture.sequences.schedule import parse_delay

BAR_WIDTH = 20


def register(cli: click.Group) -> None:
    cli.add_command(schedule_)
    cli.add_command(stats_)
    cli.add_command(deliveries)


@click.command("schedule")
@click.option(
    "--within",
    default="7d",
    show_default=True,
    help="How far ahead to look: 30m, 12h, 3d, 2w.",
)
@json_option
def schedule_(within: str, as_json: bool) -> None:
    """What will be sent, when, to how many: counts per sequence and step, per hour (up to
    two days ahead) or per day, in UTC. "quiet moved" counts the sends among them that a
    quiet day of the sequence pushed to this later time.

    Example: nurture schedule --within 2d
    """
    try:
        horizon = parse_delay(within)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--within") from None
    with reading() as s:
        rows = [asdict(r) for r in schedule(s, horizon)]
    columns = ["when", "sequence", "step", "count", "quiet_moved"]
    emit(rows, columns, as_json, f"sends within {within}")


def _bar(n: int, top: int) -> str:
    if not top or not n:
        return ""
    cells = n * BAR_WIDTH / top
    return "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "") or "▏"


@click.command("stats")
@click.argument("slug", required=False)
@json_option
def stats_(slug: str | None, as_json: bool) -> None:
    """Per-step funnel: sent, failed, clicked (when tracked), and unsubscribed or booked
    after the step (counted for the last email each person got before doing it); bounced
    (for good), soft bounces, spam complaints and replies, for the email they were about.

    Example: nurture stats partner-refuses-therapy
    """
    with reading() as s:
        result = stats(s, slug)
    if as_json:
        print_json([r.as_dict() for r in result])
    elif not is_terminal():
        _stats_tsv(result)
    elif not result:
        console.print("[dim]no sequences[/dim]")
    else:
        for seq in result:
            console.print(_stats_table(seq))


def _stats_tsv(result: list[SequenceStats]) -> None:
    tsv(
        [
            {"sequence": seq.slug, "status": seq.status, **asdict(st)}
            for seq in result
            for st in seq.steps
        ],
        # Every counter the report has, so columns added to StepStats show up here too.
        ["sequence", "status", *(f.name for f in fields(StepStats))],
    )


def _stats_table(seq: SequenceStats) -> Table:
    top = max((st.sent for st in seq.steps), default=0)
    table = Table(title=escape(clean(f"{seq.slug} [{seq.status}]")), title_justify="left")
    columns = ("step", "sent", "", "failed", "clicked", "unsubscribed", "booked", "bounced",
               "soft", "complained", "replied")  # fmt: skip
    for col in columns:
        if col:
            # Step keys fold onto a second line on a narrow terminal, never cut.
            table.add_column(col, justify="left" if col == "step" else "right", overflow="fold")
        else:
            table.add_column(col, min_width=BAR_WIDTH + 1, no_wrap=True, overflow="crop")
    for st in seq.steps:
        name = clean(st.key if st.position is not None else f"{st.key} (removed)")
        table.add_row(
            Text(name),
            str(st.sent),
            f"[green]{_bar(st.sent, top)}[/green]",
            str(st.failed),
            str(st.clicked),
            str(st.unsubscribed),
            str(st.booked),
            str(st.bounced),
            str(st.soft_bounced),
            str(st.complained),
            str(st.replied),
        )
    return table


@click.group()
def deliveries() -> None:
    """Individual sends: list them, and retry failed ones.

    Example: nurture deliveries list --status failed
    """


@deliveries.command("list")
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]), help="Only these.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@json_option
def deliveries_list(status: str | None, limit: int, as_json: bool) -> None:
    """List recent deliveries, newest first. A queued one that a mail server refused for now
    shows when it is tried next (next try).

    Example: nurture deliveries list --status failed --json
    """
    with reading() as s:
        rows = list_deliveries(s, status, limit)
    columns = ["id", "sequence", "step", "email", "status", "attempts", "due_at", "sent_at"]
    columns.append("next_try")  # a deferred send: when the next dispatch pass tries it again
    emit(
        rows,
        [*columns, "error"] if status in ("failed", "queued") else columns,
        as_json,
        "deliveries",
    )


@deliveries.command("retry")
@click.argument("delivery_id", metavar="ID", type=int, required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed delivery that may be.")
def deliveries_retry(delivery_id: int | None, all_failed: bool) -> None:
    """Put failed deliveries back in the queue: the next dispatch pass sends them. Never for
    people who unsubscribed, bounced for good, booked, or were forgotten.

    Example: nurture deliveries retry 42   (or: nurture deliveries retry --all-failed)
    """
    if (delivery_id is None) == (not all_failed):
        raise click.UsageError("give a delivery ID or --all-failed (not both)")
    with transaction() as s:
        if delivery_id is not None:
            retry_delivery(s, delivery_id)
            message = f"delivery {delivery_id} queued again"
        else:
            requeued, skipped = retry_all_failed(s)
            # Nothing failed is good news, not an error: cron jobs may run this blindly.
            message = f"{requeued} failed deliveries queued again"
            if skipped:
                message += f", {skipped} left alone (subscriber or enrollment ended)"
    click.echo(message)
