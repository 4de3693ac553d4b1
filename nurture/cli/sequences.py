"""`nurture sequences ...`: sequences are files, applied like configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.articles.services import missing_sources
from nurture.cli.output import emit, is_terminal, json_option, say
from nurture.db import reading, transaction
from nurture.sequences.archive import archive
from nurture.sequences.editing import apply_plan, plan_edit
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import format_delay
from nurture.sequences.services import get_sequence, live_steps, resume, set_status
from nurture.sequences.spec import SequenceSpec, load_path
from nurture.subscribers.models import Enrollment, EnrollmentStatus


def register(cli: click.Group) -> None:
    cli.add_command(sequences)


@click.group()
def sequences() -> None:
    """Create, inspect, pause, resume and archive sequences.

    Example: nurture sequences apply templates/sequences --dry-run
    """


@sequences.command("apply")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--dry-run", is_flag=True, help="Print what would change for people enrolled; change nothing."
)
@click.option(
    "--if-empty",
    is_flag=True,
    help="Only on a first start: apply when no sequence exists yet; otherwise read no file, "
    "change nothing and say what is live.",
)
@json_option
def apply(path: Path, dry_run: bool, if_empty: bool, as_json: bool) -> None:
    """Create or update sequences from a sequence folder (or a folder of them).

    Every file is checked before anything is written: one bad file and nothing changes.
    Steps are matched by key. For people already enrolled: a step added after their last
    sent step is sent to them, one added before it is not; a removed step's pending sends
    are cancelled and they move on to the next step; a changed delay re-times sends not
    yet claimed; a renamed key is a removal plus an addition.

    With --if-empty (what `make run` does) a restart never publishes edits half made: the
    folder is applied only to a database without sequences.

    Example: nurture sequences apply templates/sequences/partner-refuses-therapy --dry-run
    """
    if if_empty and _live_sequences():
        say(
            f"sequences already live, so {path} was not applied again (edits there wait for "
            f"`nurture sequences apply {path}`; --dry-run first shows what they change):"
        )
        _say_live()
        return
    warnings: list[str] = []
    specs = load_path(path, warnings)
    for warning in warnings:  # said before the changes, so they are read with them
        say(f"warning: {warning}", err=True)
    if dry_run:
        with reading() as s:  # planning only reads, and is rolled back
            plans = [plan_edit(s, spec) for _, spec in specs]
            unknown = _unknown_sources(s, specs)
    else:
        # Planned while reading, applied under the write lock: on SQLite, signups and sends
        # never wait for the planning (nurture/sequences/editing.py).
        with reading() as s:
            plans = [plan_edit(s, spec) for _, spec in specs]
        with transaction() as s:
            for (folder, spec), plan in zip(specs, plans, strict=True):
                apply_plan(s, spec, plan, folder)
            unknown = _unknown_sources(s, specs)
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in plans], indent=2))
    else:
        for plan in plans:
            say(plan.summary())
        if dry_run:
            click.echo("dry run: nothing was changed")
    if if_empty and not dry_run and not as_json:
        say("now live:")
        _say_live()
    # Only a note: sources document where a step's ideas come from; sending never needs them.
    if unknown:
        click.echo(
            f"note: {len(unknown)} step sources are not imported articles yet "
            f"(nurture articles import FILE...): {', '.join(unknown)}",
            err=True,
        )


def _live_sequences() -> int:
    with reading() as s:
        return s.scalar(select(func.count()).select_from(Sequence)) or 0


def _say_live() -> None:
    for row in _sequence_rows():
        say(
            f"  {row['slug']}: {row['name']} [{row['status']}], {row['steps']} steps, "
            f"{row['active']} people in it"
        )


def shown_status(seq: Sequence) -> str:
    """active, paused, archived (still sending to those in it) or "archived, paused"."""
    if seq.archived_at is None:
        return seq.status
    return "archived" if seq.status == SequenceStatus.ACTIVE else f"archived, {seq.status}"


def _unknown_sources(s: Session, specs: list[tuple[Path, SequenceSpec]]) -> list[str]:
    return missing_sources(
        s, sorted({name for _, spec in specs for step in spec.steps for name in step.sources})
    )


def _sequence_rows() -> list[dict[str, Any]]:
    with reading() as s:
        steps = (
            select(Step.sequence_id, func.count().label("n"))
            .where(Step.removed_at.is_(None))
            .group_by(Step.sequence_id)
            .subquery()
        )
        active = (
            select(Enrollment.sequence_id, func.count().label("n"))
            .where(Enrollment.status == EnrollmentStatus.ACTIVE)
            .group_by(Enrollment.sequence_id)
            .subquery()
        )
        rows = s.execute(
            select(Sequence, steps.c.n, active.c.n)
            .outerjoin(steps, steps.c.sequence_id == Sequence.id)
            .outerjoin(active, active.c.sequence_id == Sequence.id)
            .order_by(Sequence.slug)
        ).all()
        return [
            {
                "slug": seq.slug,
                "name": seq.name,
                "status": shown_status(seq),
                "steps": n_steps or 0,
                "active": n_active or 0,
            }
            for seq, n_steps, n_active in rows
        ]


@sequences.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List sequences with their status, step count and people in them.

    Example: nurture sequences list --json
    """
    emit(_sequence_rows(), ["slug", "name", "status", "steps", "active"], as_json, "sequences")


@sequences.command("show")
@click.argument("slug")
@json_option
def show(slug: str, as_json: bool) -> None:
    """Show a sequence's steps, delays, and how many people wait for each step.

    Example: nurture sequences show partner-refuses-therapy
    """
    with reading() as s:
        seq = get_sequence(s, slug)
        waiting = dict(
            s.execute(
                select(Enrollment.next_step_id, func.count())
                .where(
                    Enrollment.sequence_id == seq.id,
                    Enrollment.status == EnrollmentStatus.ACTIVE,
                    Enrollment.next_step_id.is_not(None),
                )
                .group_by(Enrollment.next_step_id)
            ).all()
        )
        rows = [
            {
                "position": st.position,
                "key": st.key,
                "delay": format_delay(st.delay_seconds),
                "subject": st.subject,
                "waiting": waiting.get(st.id, 0),
            }
            for st in live_steps(s, seq.id)
        ]
        window = seq.config.send_window.model_dump()
        header = (
            f"{seq.name} [{shown_status(seq)}]  zone {seq.config.timezone}, "
            f"window {window.get('start', '00:00')}-{window.get('end', '24:00')} "
            f"{','.join(window.get('days') or [])}"
        )
        if seq.config.quiet_days:
            header += f", quiet days {', '.join(seq.config.quiet_days)}"
    if not as_json and is_terminal():  # in a pipe, only the rows: one TSV listing
        say(header)
    emit(rows, ["position", "key", "delay", "subject", "waiting"], as_json, f"steps of {slug}")


@sequences.command("pause")
@click.argument("slug")
def pause(slug: str) -> None:
    """Hold all sends of a sequence; nothing is lost, and `resume` picks up where it stopped.

    Example: nurture sequences pause partner-refuses-therapy
    """
    with transaction() as s:
        was = get_sequence(s, slug).status
        set_status(s, slug, SequenceStatus.PAUSED)
    if was == SequenceStatus.PAUSED:
        say(f"{slug}: already paused (sends are held; `nurture sequences resume {slug}`)")
    else:
        say(f"{slug}: paused (sends are held; the form still takes signups, who wait too)")


@sequences.command("resume")
@click.argument("slug")
def resume_(slug: str) -> None:
    """Resume a paused sequence. Sends that fell due during the pause go out in each
    subscriber's next send window, not all at once.

    Example: nurture sequences resume partner-refuses-therapy
    """
    with transaction() as s:
        was = get_sequence(s, slug).status
        retimed = resume(s, slug)
    if was != SequenceStatus.PAUSED:
        say(f"{slug}: already sending (it was not paused)")
        return
    say(f"{slug}: resumed ({retimed} held sends re-timed to the next send window)")


@sequences.command("archive")
@click.argument("slug")
@click.option(
    "--stop",
    is_flag=True,
    help="Also end the sequence for everyone in it now (their remaining emails are not sent).",
)
def archive_(slug: str, stop: bool) -> None:
    """Close a sequence for good: its signup form and embed answer 410 Gone with a kind
    page, and no one new can be added. People already in it receive their remaining emails,
    unless --stop. (To hold sending for a while instead, use `pause`: a paused sequence
    keeps its form open.)

    Example: nurture sequences archive partner-refuses-therapy
    """
    with transaction() as s:
        result = archive(s, slug, stop=stop)
    state = "already archived" if result.already else "archived"
    if stop:
        say(f"{slug}: {state}; the form is closed and {result.stopped} people in it were stopped")
    else:
        say(
            f"{slug}: {state}; the form is closed, {result.finishing} people in it will "
            "receive their remaining emails (--stop ends them now)"
        )
