"""`nurture sequences ...`: sequences are files, applied like configuration."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import func, select

from nurture.articles.services import missing_sources
from nurture.cli.output import emit, json_option
from nurture.db import transaction
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.sequences.schedule import format_delay
from nurture.sequences.services import apply_spec, get_sequence, live_steps, set_status
from nurture.sequences.spec import find_folders, load_folder


def register(cli: click.Group) -> None:
    cli.add_command(sequences)


@click.group()
def sequences() -> None:
    """Create, inspect, pause and resume sequences."""


@sequences.command("apply")
@click.argument("path", type=click.Path(path_type=Path))
def apply(path: Path) -> None:
    """Create or update sequences from a sequence folder (or a folder of them).

    Every folder is checked before anything is written: one bad file and nothing changes.

    Example: nurture sequences apply templates/sequences/partner-refuses-therapy
    """
    specs = [(folder, load_folder(folder)) for folder in find_folders(path)]
    with transaction() as s:
        results = [apply_spec(s, spec, folder) for folder, spec in specs]
        sources = sorted(
            {name for _, spec in specs for step in spec.steps for name in step.sources}
        )
        unknown = missing_sources(s, sources)
    for r in results:
        verb = "created" if r.created else "updated"
        click.echo(
            f"{r.slug}: {verb} ({len(r.added)} added, {len(r.changed)} changed, "
            f"{len(r.removed)} removed)"
        )
    # Only a note: sources document where a step's ideas come from; sending never needs them.
    if unknown:
        click.echo(
            f"note: {len(unknown)} step sources are not imported articles yet "
            f"(nurture articles import FILE...): {', '.join(unknown)}",
            err=True,
        )


@sequences.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List sequences with their status and step count.

    Example: nurture sequences list --json
    """
    with transaction() as s:
        steps = (
            select(Step.sequence_id, func.count().label("n"))
            .where(Step.removed_at.is_(None))
            .group_by(Step.sequence_id)
            .subquery()
        )
        rows = s.execute(
            select(Sequence, steps.c.n).outerjoin(steps, steps.c.sequence_id == Sequence.id)
        ).all()
        out = [
            {"slug": seq.slug, "name": seq.name, "status": seq.status, "steps": n or 0}
            for seq, n in rows
        ]
    emit(out, ["slug", "name", "status", "steps"], as_json, "sequences")


@sequences.command("show")
@click.argument("slug")
@json_option
def show(slug: str, as_json: bool) -> None:
    """Show a sequence's steps and delays.

    Example: nurture sequences show partner-refuses-therapy
    """
    with transaction() as s:
        seq = get_sequence(s, slug)
        rows = [
            {
                "position": st.position,
                "key": st.key,
                "delay": format_delay(st.delay_seconds),
                "subject": st.subject,
            }
            for st in live_steps(s, seq.id)
        ]
    emit(rows, ["position", "key", "delay", "subject"], as_json, f"steps of {slug}")


@sequences.command("pause")
@click.argument("slug")
def pause(slug: str) -> None:
    """Hold all sends of a sequence; nothing is lost.

    Example: nurture sequences pause partner-refuses-therapy
    """
    with transaction() as s:
        set_status(s, slug, SequenceStatus.PAUSED)
    click.echo(f"{slug}: paused")


@sequences.command("resume")
@click.argument("slug")
def resume(slug: str) -> None:
    """Resume a paused sequence; held sends go out in their next send window.

    Example: nurture sequences resume partner-refuses-therapy
    """
    with transaction() as s:
        set_status(s, slug, SequenceStatus.ACTIVE)
    click.echo(f"{slug}: resumed")
