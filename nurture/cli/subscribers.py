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

from nurture.admin.services import audit_command, by_command
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
    zone_name,
)
from nurture.clock import now
from nurture.db import checkpoint, get_engine, reading, transaction
from nurture.errors import NurtureError
from nurture.mail.backends import MailError
from nurture.sequences.archive import require_open
from nurture.sequences.models import SequenceStatus
from nurture.sequences.services import get_sequence
from nurture.subscribers import confirmation, holding, importing, moving
from nurture.subscribers.addresses import find_subscriber, get_subscriber
from nurture.subscribers.operator import Asked, Outcome, add_one, skipped_message
from nurture.subscribers.privacy import EXPORT_FIELDS, export_rows, forget_person, spreadsheet_safe
from nurture.subscribers.queries import (
    STATUSES,
    consent_proof,
    list_subscribers,
    subscriber_history,
)
from nurture.subscribers.retention import purge
from nurture.subscribers.unsubscribe import unsubscribe_by_email


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)


@click.group()
def subscribers() -> None:
    """Add, import, move, inspect, export, unsubscribe and forget subscribers.

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


def column_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for value in values:
        name, sep, header = value.partition("=")
        name = name.strip().lower()
        if not sep or not header.strip():
            raise click.BadParameter(f'{value!r}: use FIELD=HEADER, e.g. email="E-mail 1"')
        if name not in importing.COLUMNS:
            raise click.BadParameter(f"{name!r}: the fields are {', '.join(importing.COLUMNS)}")
        chosen[name] = header
    return chosen


@subscribers.command("import")
@click.argument("csv_path", metavar="CSV", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sequence", "slug", required=True, help="Sequence slug to enrol everyone in.")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Everyone already confirmed elsewhere: start the sequence, each person's first email "
    "in their own send window. Without it they are kept as pending and receive nothing: a "
    "list is never cold-mailed confirmation requests.",
)
@click.option("--skip-invalid", is_flag=True, help="Import the good rows and report the bad ones.")
@click.option("--dry-run", is_flag=True, help="Print what the import would do, and change nothing.")
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=HEADER",
    callback=column_option,
    help="Which column holds email, first_name or timezone, when its header is not one "
    'nurture knows, e.g. --column email="E-mail 1". Repeatable.',
)
@click.option(
    "--update-names",
    is_flag=True,
    help="Take the file's first name for people already known (without it the name held is "
    "kept, and each row that differs is named).",
)
def import_(
    csv_path: Path,
    slug: str,
    confirmed: bool,
    skip_invalid: bool,
    dry_run: bool,
    columns: dict[str, str],
    update_names: bool,
) -> None:
    """Import subscribers from a CSV file: a column of email addresses, and optionally first
    names and time zones. Exports of Mailchimp, Kit, Google Contacts or Outlook are read as
    they are (their header names are known; `,` `;` and tab separators are detected). The
    whole file is checked first: a bad row is reported with its line number and nothing is
    imported, unless --skip-invalid. It prints who is new, who was known, who was skipped
    and why, and when the first emails go.

    Example: nurture subscribers import people.csv --sequence partner-refuses-therapy --dry-run
    """
    with reading() as s:
        seq = get_sequence(s, slug)
        require_open(seq)  # unknown or archived: fail before reading
        paused = seq.status == SequenceStatus.PAUSED
    size = csv_path.stat().st_size if csv_path.exists() else 0
    with progress_bar() as bar:
        checking = bar.add_task("checking", total=size)
        checked = importing.check_csv(csv_path, lambda n: bar.advance(checking, n), columns)
        bar.remove_task(checking)
        for err in checked.errors:
            say(f"{csv_path}: {err}", err=True)  # a bad row's text is not ours to print raw
        loading = bar.add_task("reading" if dry_run else "importing", total=checked.valid)
        result = importing.import_csv(
            csv_path,
            slug,
            confirmed=confirmed,
            skip_invalid=skip_invalid,
            checked=checked,
            import_progress=lambda n: bar.advance(loading, n),
            columns=columns,
            update_names=update_names,
            dry_run=dry_run,
        )
    for line in import_lines(result, slug, confirmed=confirmed, paused=paused):
        say(line)
    if dry_run:
        click.echo("dry run: nothing changed")


def import_lines(
    result: importing.ImportResult, slug: str, *, confirmed: bool, paused: bool
) -> list[str]:
    """What an import did (or, dry, would do): the summary, the rows worth a look, and when
    the first emails go."""
    skipped = f", {result.check.bad} bad row(s) skipped" if result.check.bad else ""
    already = f", {result.already} already enrolled" if result.already else ""
    left = ", ".join(f"{n} {why}" for why, n in sorted(result.refused.items()))
    # People who left are never put back by an import: they are named by reason only.
    refused = f", {result.skipped} skipped who left ({left})" if left else ""
    repeated = f", {result.repeated} repeated row(s) merged" if result.repeated else ""
    verb = "would import" if result.dry_run else "imported"
    lines = [
        f"{verb} {result.added + result.updated} into {slug}: {result.added} new, "
        f"{result.updated} already known{already}{skipped}{refused}{repeated}"
    ]
    lines += result.lines()
    if result.skipped > len(result.skipped_lines):
        lines.append(f"(and {result.skipped - len(result.skipped_lines)} more skipped)")
    if result.zones_changed > len(result.zone_lines):
        lines.append(f"(and {result.zones_changed - len(result.zone_lines)} more time zones)")
    if result.names_differ > len(result.name_lines):
        lines.append(f"(and {result.names_differ - len(result.name_lines)} more names differ)")
    lines.append(first_emails(result, confirmed=confirmed, paused=paused))
    return lines


SHOWN_TIMES = 4


def first_emails(result: importing.ImportResult, *, confirmed: bool, paused: bool) -> str:
    if not confirmed:
        return (
            "first emails: none; they wait as pending until they confirm (an import sends no "
            "confirmation request: `subscribers resend-confirmation` asks one person)"
        )
    if not result.first_sends:
        return "first emails: none (nobody new starts the sequence)"
    t = now()
    at_once = sum(n for due, n in result.first_sends.items() if due <= t)
    later = sorted((due, n) for due, n in result.first_sends.items() if due > t)
    parts = [f"{at_once} now (inside their send window)"] if at_once else []
    parts += [f"{n} at {when(due)}" for due, n in later[:SHOWN_TIMES]]
    if len(later) > SHOWN_TIMES:
        rest = sum(n for _, n in later[SHOWN_TIMES:])
        parts.append(f"{rest} more until {when(later[-1][0])}")
    hold = "; the sequence is paused: nothing goes until `sequences resume`" if paused else ""
    return f"first emails ({zone_name()} time): {', '.join(parts)}{hold}"


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
    breaks = [e["paused_until"] for e in data["enrollments"] if e.get("paused_until")]
    if breaks:
        say(f"on a break they took until {when(max(breaks), named=True)}")
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
    audit_command("reader unsubscribe", email)
    click.echo("unsubscribed" if changed else "already unsubscribed")


@subscribers.command("booked")
@click.argument("email")
def booked(email: str) -> None:
    """Mark someone as booked (they took the consult): their sequences stop.

    Example: nurture subscribers booked ann@example.com
    """
    with transaction() as s:
        sub = get_subscriber(s, email)
        changed = mark_booked(s, sub, source="cli")
        by_command(s, "reader booked", sub.id)
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
        sub = get_subscriber(s, email)
        n = holding.pause(s, sub, slug, by="cli")
        by_command(s, "reader pause", sub.id, slug)
    click.echo(f"paused {n} sequence(s)" if n else "nothing to pause: no running sequence")


@subscribers.command("resume")
@click.argument("email")
@click.option("--sequence", "slug", help="Only this sequence (default: all paused ones).")
def resume_(email: str, slug: str | None) -> None:
    """Let a paused sequence go on: the next step goes in the reader's next send window.

    Example: nurture subscribers resume ann@example.com
    """
    with transaction() as s:
        sub = get_subscriber(s, email)
        n = holding.resume(s, sub, slug, by="cli")
        by_command(s, "reader resume", sub.id, slug)
    click.echo(f"resumed {n} sequence(s)" if n else "nothing to resume: no paused sequence")


@subscribers.command("remove")
@click.argument("email")
@click.option("--sequence", "slug", required=True, help="The sequence to take them out of.")
def remove_(email: str, slug: str) -> None:
    """Take someone out of one sequence: its queued emails are cancelled, nothing more of it
    is sent. They stay subscribed, and their other sequences go on (to stop everything, use
    `unsubscribe`). `add` puts them back later, with the steps they have not had.

    Example: nurture subscribers remove ann@example.com --sequence partner-refuses-therapy
    """
    with transaction() as s:
        sub = get_subscriber(s, email)
        ended = moving.remove(s, sub, get_sequence(s, slug), by="cli")
        by_command(s, "reader take-out", sub.id, slug)
    if ended is None:
        say(f"removed from {slug}; their other sequences go on")
    else:
        say(f"nothing to remove: their place in {slug} already ended ({ended})")


@subscribers.command("move")
@click.argument("email")
@click.option("--from", "source", required=True, help="The sequence they are in now.")
@click.option("--to", "target", required=True, help="The sequence to move them to.")
def move_(email: str, source: str, target: str) -> None:
    """Move someone from one sequence to another: the first ends (its queued emails are
    cancelled), the second starts from its first step, in their send window. Their consent
    to it is recorded as held by you; someone who had not confirmed the first stays waiting
    for their yes. People who left or booked are never moved.

    Example: nurture subscribers move ann@example.com --from first-steps --to after-leaving
    """
    with transaction() as s:
        sub = get_subscriber(s, email)
        moved = moving.move(s, sub, get_sequence(s, source), get_sequence(s, target))
        by_command(s, "reader move", sub.id, f"{source} -> {target}")
    if moved.started and moved.first_due is not None:
        goes = "now" if moved.first_due <= now() else when(moved.first_due, named=True)
        say(f"moved from {source} to {target}; its first email goes {goes}")
    elif moved.started:
        say(f"moved from {source} to {target}; it has no email left for them")
    else:
        say(
            f"moved from {source} to {target}; they have not confirmed yet, so nothing is sent "
            f"until they do (`subscribers resend-confirmation EMAIL --sequence {target}`)"
        )


@subscribers.command("resend-confirmation")
@click.argument("email")
@click.option(
    "--sequence", "slug", help="The sequence waiting for their yes (needed if several are)."
)
def resend_confirmation(email: str, slug: str | None) -> None:
    """Send the confirmation email again to someone who has not confirmed. An address gets
    at most three confirmation emails a day, however they are asked for.

    Example: nurture subscribers resend-confirmation ann@example.com --sequence first-steps
    """
    try:
        asked = confirmation.ask_again(email, slug)
    except MailError as exc:
        raise NurtureError(f"not sent: {exc}; run this again to retry") from None
    if asked.limit_until is not None:
        raise NurtureError(
            f"not sent: this address already had {confirmation.CONFIRMATIONS_PER_DAY} "
            "confirmation emails in the last 24 hours, the most it gets; another may go from "
            f"{when(asked.limit_until, named=True)}"
        )
    if not asked.sent:
        raise NurtureError("not sent: their signup no longer waits for a confirmation")
    audit_command("reader resend-confirmation", email, asked.slug)
    say(f"confirmation email sent for {asked.slug}: the sequence starts when they confirm")


@subscribers.command("consent")
@click.argument("email")
@json_option
def consent_(email: str, as_json: bool) -> None:
    """Show the proof of someone's consent: for each sequence, when they agreed, the exact
    words they agreed to, how they came (the form, an import, an operator) and from which
    page, and when they confirmed.

    Example: nurture subscribers consent ann@example.com --json
    """
    with reading() as s:
        proof = consent_proof(s, email)
    if as_json:
        print_json(proof)
        return
    say(f"{proof['email']} ({proof['status']}): {len(proof['consents'])} consent(s)")
    for c in proof["consents"]:
        where = {
            "form": f"the signup form{' on ' + c['page'] if c['page'] else ''}",
            "import": "an operator's import",
            "operator": "an operator, who holds their consent",
        }.get(c["how"], c["how"])
        said_yes = when(c["confirmed_at"], named=True) or "not confirmed"
        say(f"\n{c['sequence'] or '(sequence deleted)'}: came through {where}")
        say(f"  agreed     {when(c['given_at'], named=True)}")
        say(f"  confirmed  {said_yes}")
        say(f"  words      ({c['version']}) {c['text']}")


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
    with reading() as s:
        held = find_subscriber(s, email)
        held_id = held.id if held is not None else None
    result = forget_person(email)
    with transaction() as s:  # after: the entry names only the number they had
        by_command(s, "reader forget", held_id)
    # The audit entry went through SQLite's write-ahead log, whose pages also held the
    # person's rows: empty it again, as forgetting did.
    checkpoint(get_engine())
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
