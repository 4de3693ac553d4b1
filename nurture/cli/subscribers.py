"""`nurture subscribers ...`: the people on the list and their data."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from nurture.booking.booked import mark_booked
from nurture.cli.output import (
    clean,
    console,
    emit,
    human,
    is_terminal,
    json_option,
    print_json,
    say,
    tsv,
    when,
)
from nurture.db import reading, transaction
from nurture.errors import NurtureError
from nurture.sequences.archive import require_open
from nurture.sequences.services import get_sequence
from nurture.subscribers import holding, importing
from nurture.subscribers.addresses import get_subscriber
from nurture.subscribers.operator import Asked, Outcome, add_one, skipped_message
from nurture.subscribers.privacy import EXPORT_FIELDS, export_rows, forget_person, spreadsheet_safe
from nurture.subscribers.queries import STATUSES, list_subscribers, subscriber_history
from nurture.subscribers.retention import purge
from nurture.subscribers.unsubscribe import unsubscribe_by_email


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)


@click.group()
def subscribers() -> None:
    """Add, import, inspect, export, unsubscribe and forget subscribers.

    Example: nurture subscribers list --sequence partner-refuses-therapy --status active
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--sequence", "slug", required=True, help="Sequence slug to enrol them in.")
@click.option("--name", "first_name", help="First name, used in greetings.")
@click.option("--timezone", help="IANA time zone, e.g. America/Chicago (default: the sequence's).")
@click.option(
    "--confirmed",
    is_flag=True,
    help="They already confirmed elsewhere: start the sequence now. Without it they get a "
    "confirmation email and nothing else until they confirm.",
)
def add(
    email: str, slug: str, first_name: str | None, timezone: str | None, confirmed: bool
) -> None:
    """Add one subscriber to a sequence.

    Example: nurture subscribers add ann@example.com --sequence partner-refuses-therapy --confirmed
    """
    added = add_one(slug, email, first_name=first_name, timezone=timezone, confirmed=confirmed)
    if added.outcome == Outcome.SKIPPED:
        raise NurtureError(skipped_message(added.reason or ""))
    if added.outcome == Outcome.ALREADY and added.asked == Asked.NOT_NEEDED:
        click.echo(f"already enrolled in {slug} ({added.reason}): nothing changed")
        return
    if added.outcome == Outcome.ALREADY:
        click.echo(f"already enrolled in {slug} ({added.reason}): asking them to confirm again")
    else:
        click.echo(f"added to {slug} ({added.status})")
    if added.asked == Asked.FAILED:
        raise NurtureError(
            f"added, but the confirmation email was not sent ({added.mail_error}); "
            "run this again to retry"
        )
    if added.asked == Asked.SENT:
        click.echo("confirmation email sent: the sequence starts when they confirm")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@subscribers.command("import")
@click.argument("csv_path", metavar="CSV", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sequence", "slug", required=True, help="Sequence slug to enrol everyone in.")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Everyone already confirmed elsewhere: start the sequence. Without it they are kept "
    "as pending and receive nothing: a list is never cold-mailed confirmation requests.",
)
@click.option("--skip-invalid", is_flag=True, help="Import the good rows and report the bad ones.")
def import_(csv_path: Path, slug: str, confirmed: bool, skip_invalid: bool) -> None:
    """Import subscribers from a CSV file with columns email, first_name (optional) and
    timezone (optional). The whole file is checked first: a bad row is reported with its
    line number and nothing is imported, unless --skip-invalid.

    Example: nurture subscribers import people.csv --sequence partner-refuses-therapy --confirmed
    """
    with reading() as s:
        require_open(get_sequence(s, slug))  # unknown or archived: fail before reading
    size = csv_path.stat().st_size if csv_path.exists() else 0
    with progress_bar() as bar:
        checking = bar.add_task("checking", total=size)
        checked = importing.check_csv(csv_path, lambda n: bar.advance(checking, n))
        bar.remove_task(checking)
        for err in checked.errors:
            say(f"{csv_path}: {err}", err=True)  # a bad row's text is not ours to print raw
        loading = bar.add_task("importing", total=checked.valid)
        result = importing.import_csv(
            csv_path,
            slug,
            confirmed=confirmed,
            skip_invalid=skip_invalid,
            checked=checked,
            import_progress=lambda n: bar.advance(loading, n),
        )
    skipped = f", {result.check.bad} bad row(s) skipped" if result.check.bad else ""
    already = f", {result.already} already enrolled" if result.already else ""
    left = ", ".join(f"{n} {why}" for why, n in sorted(result.refused.items()))
    # People who left are never put back by an import: they are named by reason only.
    refused = f", {sum(result.refused.values())} skipped who left ({left})" if left else ""
    repeated = f", {result.repeated} repeated row(s) merged" if result.repeated else ""
    click.echo(
        f"imported {result.added + result.updated} into {slug}: {result.added} new, "
        f"{result.updated} already known{already}{skipped}{refused}{repeated}"
    )


@subscribers.command("list")
@click.option("--sequence", "slug", help="Only people in this sequence.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    help="Person status (pending, confirmed, unsubscribed, bounced, complained) or enrollment "
    "status (active, paused, completed...).",
)
@click.option("--limit", type=click.IntRange(1), help="At most this many rows.")
@json_option
def list_(slug: str | None, status: str | None, limit: int | None, as_json: bool) -> None:
    """List subscribers, one row per person and sequence.

    Example: nurture subscribers list --sequence partner-refuses-therapy --status active --json
    """
    with reading() as s:
        rows = list_subscribers(s, slug, status, limit)
    columns = [
        "email",
        "first_name",
        "status",
        "sequence",
        "enrollment",
        "last_step",
        "next_due_at",
    ]
    emit(rows, columns, as_json, "subscribers")


@subscribers.command("show")
@click.argument("email")
@json_option
def show(email: str, as_json: bool) -> None:
    """Tell one person's whole story: consents, enrollments, every email with its time and
    status, and events.

    Example: nurture subscribers show ann@example.com
    """
    with reading() as s:
        data = subscriber_history(s, email)
    if as_json:
        print_json(data)
        return
    sections: list[tuple[str, list[str]]] = [
        ("consents", ["at", "sequence", "source", "version", "confirmed_at", "article"]),
        (
            "enrollments",
            [
                "sequence",
                "status",
                "started_at",
                "last_step",
                "next_step",
                "next_due_at",
                "paused_until",
            ],
        ),
        ("deliveries", ["id", "sequence", "step", "status", "due_at", "sent_at", "error"]),
        ("events", ["at", "kind", "sequence", "step", "detail"]),
    ]
    if not is_terminal():
        # A pipe gets the person as one TSV row, then each section under a "# name" line.
        tsv([data], ["email", "first_name", "status", "timezone", "created_at"])
        for name, columns in sections:
            click.echo(f"# {name}")
            tsv(data[name], columns)
        return
    console.print(
        Text.assemble(
            (clean(data["email"]), "bold"),
            f" {clean(data['first_name'] or '')}  status {data['status']}, "
            f"zone {clean(data['timezone'] or '(sequence default)')}, "
            f"since {human(data['created_at'])}",
        )
    )
    for event in data["events"]:
        if until := (event["data"] or {}).get("until"):  # a break: until when, in our zone
            event["detail"] = " ".join(filter(None, [event["detail"], f"until {when(until)}"]))
    for name, columns in sections:
        emit(data[name], columns, False, name)


@subscribers.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@json_option
def export(fmt: str, as_json: bool) -> None:
    """Write every subscriber to stdout (streamed: fine for large lists). --json is the
    same as --format json.

    Example: nurture subscribers export --format csv > subscribers.csv
    """
    if as_json:
        fmt = "json"
    out = sys.stdout
    with reading() as s:
        rows = export_rows(s)
        if fmt == "csv":
            if is_terminal():  # on screen, not into a file: nothing may drive the terminal
                rows = (
                    {k: clean(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows
                )
            writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(spreadsheet_safe(row) for row in rows)
        else:
            out.write("[")
            for i, row in enumerate(rows):
                out.write(("," if i else "") + "\n  " + json.dumps(row))
            out.write("\n]\n")
    out.flush()


@subscribers.command("unsubscribe")
@click.argument("email")
def unsubscribe_(email: str) -> None:
    """Unsubscribe someone: every sequence stops and queued emails are cancelled.

    Example: nurture subscribers unsubscribe ann@example.com
    """
    changed = unsubscribe_by_email(email, how="cli")
    click.echo("unsubscribed" if changed else "already unsubscribed")


@subscribers.command("booked")
@click.argument("email")
def booked(email: str) -> None:
    """Mark someone as booked (they took the consult): their sequences stop.

    Example: nurture subscribers booked ann@example.com
    """
    with transaction() as s:
        changed = mark_booked(s, get_subscriber(s, email), source="cli")
    click.echo("marked booked" if changed else "already booked")


@subscribers.command("pause")
@click.argument("email")
@click.option("--sequence", "slug", help="Only this sequence (default: all of theirs).")
def pause_(email: str, slug: str | None) -> None:
    """Hold one person's sequence where it is (a reply to one of its emails does the same,
    unless the sequence says otherwise). Nothing more is sent until `resume`.

    Example: nurture subscribers pause ann@example.com --sequence partner-refuses-therapy
    """
    with transaction() as s:
        n = holding.pause(s, get_subscriber(s, email), slug, by="cli")
    click.echo(f"paused {n} sequence(s)" if n else "nothing to pause: no running sequence")


@subscribers.command("resume")
@click.argument("email")
@click.option("--sequence", "slug", help="Only this sequence (default: all paused ones).")
def resume_(email: str, slug: str | None) -> None:
    """Let a paused sequence go on: the next step goes in the reader's next send window.

    Example: nurture subscribers resume ann@example.com
    """
    with transaction() as s:
        n = holding.resume(s, get_subscriber(s, email), slug, by="cli")
    click.echo(f"resumed {n} sequence(s)" if n else "nothing to resume: no paused sequence")


@subscribers.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget_(email: str, yes: bool) -> None:
    """Erase everything held on a person (subscriber, consents, enrollments, deliveries;
    events lose every link to them). Only a keyed hash of the address remains, so it is
    never mailed or re-added by mistake. Cannot be undone.

    Example: nurture subscribers forget ann@example.com --yes
    """
    if not yes:
        # Erasing cannot be undone: a person at a terminal is asked; a script must say so.
        if not sys.stdin.isatty():
            raise NurtureError("forget erases for good: confirm with --yes (no terminal to ask)")
        click.confirm("Erase this person's data for good?", abort=True)
    result = forget_person(email)
    if result.found:
        click.echo("forgotten: personal data erased, address suppressed")
    else:
        click.echo("no data held for that address; it is now suppressed")
    if result.copies.removed:
        click.echo(f"{result.copies.removed} copies of their emails deleted from the outbox")
    for where in result.copies.left:
        say(f"could not delete a copy of their email: {where}", err=True)


@subscribers.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count who would be erased.")
@json_option
def purge_(dry_run: bool, as_json: bool) -> None:
    """Apply the limits now: erase, as `forget` does, everyone whose sequences all ended at
    least NURTURE_RETENTION_DAYS ago, and signups nobody confirmed within
    NURTURE_PENDING_DAYS (30). Prints counts, never addresses. Beat runs this daily.

    Example: nurture subscribers purge --dry-run
    """
    result = purge(dry_run=dry_run)
    if as_json:
        data = asdict(result)
        for key in ("cutoff", "pending_cutoff"):
            data[key] = data[key].isoformat() if data[key] else None
        click.echo(json.dumps(data))
        return
    pending = f"signups not confirmed since {human(result.pending_cutoff)}"
    if result.cutoff is None:
        ended = "NURTURE_RETENTION_DAYS is not set: finished readers are kept"
    else:
        ended = f"sequences all ended before {human(result.cutoff)}"
    if dry_run:
        click.echo(f"{result.due} people would be erased ({ended})")
        click.echo(f"{result.pending_due} unconfirmed signups would be erased ({pending})")
        click.echo("dry run: nothing changed")
    else:
        click.echo(f"{result.erased} people erased ({ended}); only address hashes remain")
        click.echo(f"{result.pending_erased} unconfirmed signups erased ({pending})")
