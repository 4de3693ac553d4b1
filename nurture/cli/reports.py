"""`nurture schedule`, `nurture stats`, `nurture deliveries ...`: what will go out, how each
step does, and the sends that failed."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import click
from rich.console import RenderableType
from rich.text import Text

from nurture.cli.output import (
    DAY,
    MINUTE,
    Cell,
    console,
    emit,
    fitted,
    is_terminal,
    json_option,
    print_json,
    tsv,
    when,
    zone_name,
)
from nurture.db import reading, transaction
from nurture.delivery.models import DeliveryStatus
from nurture.delivery.retry import retry_all_failed, retry_delivery
from nurture.reports import (
    DeliveryRow,
    Held,
    HeldBack,
    ScheduleRow,
    SequenceFunnel,
    Slot,
    StepFunnel,
    list_deliveries,
    schedule,
    stats,
)
from nurture.sequences.schedule import parse_delay
from nurture.subscribers.queries import iso

BAR_WIDTH = 10


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
    two days ahead) or per day with the first and last send's time, in the practice's zone
    (NURTURE_TIMEZONE). "held back" says how many of them wait, and why: for the reader's
    send window, a quiet day, the daily limit; paused ones are listed last.

    Example: nurture schedule --within 2d
    """
    try:
        horizon = parse_delay(within)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--within") from None
    with reading() as s:
        planned = schedule(s, horizon)
    if as_json:
        print_json([_schedule_json(r) for r in planned.rows])
    elif not is_terminal():
        tsv([_schedule_json(r) | asdict(r.held) for r in planned.rows], SCHEDULE_TSV)
    elif not planned.rows:
        console.print(Text(f"nothing to send within {within}", style="dim"))
    else:
        held = any(_held_words(r.held, r.slot) for r in planned.rows)
        console.print(
            fitted(
                ["when", "sequence", "step", "sends", *(["held back"] if held else [])],
                [
                    [
                        _slot_cell(r),
                        Cell.of(r.sequence),
                        Cell.of(r.step),
                        Cell.of(r.count),
                        *([Cell(_held_words(r.held, r.slot))] if held else []),
                    ]
                    for r in planned.rows
                ],
                title=f"sends within {within}",
                caption=f"times in {zone_name(planned.zone)}",
                right=[3],
            )
        )


SCHEDULE_TSV = [
    "slot", "start", "first", "last", "sequence", "step", "count",
    *(reason.value for reason in Held),
]  # fmt: skip

HELD_WORDS = {
    Held.WINDOW: "window",
    Held.QUIET_DAY: "quiet day",
    Held.DAILY_LIMIT: "daily limit",
    Held.PAUSED: "paused",
}


def _schedule_json(r: ScheduleRow) -> dict[str, Any]:
    return {
        "slot": r.slot.value,
        "start": iso(r.start),
        "first": iso(r.first),
        "last": iso(r.last),
        "sequence": r.sequence,
        "step": r.step,
        "count": r.count,
        "held": asdict(r.held),
    }


def _slot_cell(r: ScheduleRow) -> Cell:
    """ "Fri 4 Dec 09:00" (an hour), "Fri 4 Dec 09:00-10:45" (a day, its first and last
    send): the date stays on one line, the time may go under it."""
    if r.slot is Slot.NOW:
        return Cell(("now", "(overdue)"))
    if r.slot is Slot.PAUSED:
        return Cell(("paused",))
    if r.slot is Slot.HOUR:
        return Cell((when(r.start, DAY), when(r.start, MINUTE)[-5:]))
    span = when(r.first, MINUTE)[-5:]
    if r.last is not None and r.last != r.first:
        span += f"-{when(r.last, MINUTE)[-5:]}"
    return Cell((when(r.start, DAY), span))


def _held_words(held: HeldBack, slot: Slot) -> tuple[str, ...]:
    """ "2 window, 1 quiet day": each part kept whole on its line. Paused rows say it in
    their slot already."""
    parts = [
        f"{held.get(reason)} {HELD_WORDS[reason]}"
        for reason in Held
        if held.get(reason) and not (slot is Slot.PAUSED and reason is Held.PAUSED)
    ]
    return tuple(f"{p}," for p in parts[:-1]) + tuple(parts[-1:])


def _bar(n: int, top: int) -> str:
    if not top or not n:
        return ""
    cells = n * BAR_WIDTH / top
    return "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "") or "▏"


def _percent(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.0%}"


@click.command("stats")
@click.argument("slug", required=False)
@json_option
def stats_(slug: str | None, as_json: bool) -> None:
    """Per sequence, the funnel: signed up, confirmed (and how many still wait to confirm),
    each step sent, booked, with rates. Then per email: sent, failed, clicked (— when clicks
    are not tracked), and what followed it: unsubscribed, took a break or booked (counted for
    the last email each person got before doing it); bounced (for good), soft bounces, spam
    complaints and replies, for the email they were about.

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
            console.print(_funnel_table(seq))
            console.print(_steps_table(seq))
            if not seq.clicks_tracked:
                console.print(Text(NOT_TRACKED, style="dim"))


NOT_TRACKED = (
    "clicked —: clicks are not tracked for this sequence (NURTURE_TRACK_CLICKS=true, or "
    "tracking: {clicks: true} in its sequence.yaml, turns it on)"
)


def _stats_tsv(result: list[SequenceFunnel]) -> None:
    tsv(
        [
            {"sequence": seq.slug, "status": seq.status, **vars(st)}
            for seq in result
            for st in seq.steps
        ],
        # Every counter the report has, so columns added to StepFunnel show up here too.
        ["sequence", "status", *(f.name for f in fields(StepFunnel))],
    )


def _funnel_table(seq: SequenceFunnel) -> RenderableType:
    stages = seq.stages()
    top = max((st.count for st in stages), default=0)
    rows = []
    for i, st in enumerate(stages):
        name = Cell.of(st.name)
        if st.name == "confirmed" and i == 1 and seq.waiting:
            name = Cell((*name.words, f"({seq.waiting} waiting)"))
        bar = _bar(st.count, top)
        rows.append(
            [
                name,
                Cell.of(st.count),
                Cell.of(_percent(st.of_previous) if i else ""),
                Cell.of(_percent(st.of_start) if i else ""),
                Cell((bar,) if bar else (), "green"),
            ]
        )
    return fitted(
        ["funnel", "people", "of previous", "of signed up", "share"],
        rows,
        title=f"{seq.slug} [{seq.status}]",
        right=[1, 2, 3],
    )


AFTER_WORDS = (
    ("unsubscribed", "unsubscribed"),
    ("took_break", "took a break"),
    ("booked", "booked"),
    ("bounced", "bounced"),
    ("soft_bounced", "soft bounce"),
    ("complained", "spam complaint"),
    ("replied", "replied"),
)


def _steps_table(seq: SequenceFunnel) -> RenderableType:
    rows = []
    for st in seq.steps:
        name = st.key if st.position is not None else f"{st.key} (removed)"
        after = [f"{getattr(st, attr)} {word}" for attr, word in AFTER_WORDS if getattr(st, attr)]
        rows.append(
            [
                Cell.of(name),
                Cell.of(st.sent),
                Cell.of(st.failed),
                Cell.of("—" if st.clicked is None else st.clicked),
                Cell(tuple(f"{p}," for p in after[:-1]) + tuple(after[-1:])),
            ]
        )
    return fitted(["email", "sent", "failed", "clicked", "after it"], rows, right=[1, 2, 3])


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
        found = list_deliveries(s, status, limit)
    rows = [_delivery_json(d) for d in found]
    columns = ["id", "sequence", "step", "email", "status", "attempts", "due_at", "sent_at"]
    columns.append("next_try")  # a deferred send: when the next dispatch pass tries it again
    if status in ("failed", "queued"):
        columns.append("error")
    if as_json or not is_terminal():
        emit(rows, columns, as_json, "deliveries")
        return
    # On a terminal, one time per send (when it went, else when it is due) leaves room for
    # the address whole at 80 columns.
    shown = [
        {
            "id": d.id,
            "sequence": d.sequence,
            "step": d.step,
            "email": d.email,
            "status": d.status,
            "tries": d.attempts,
            "at": d.sent_at or d.due_at,
            "next_try": d.next_try,
            "error": d.error,
        }
        for d in found
    ]
    emit(shown, ["id", "sequence", "step", "email", "status", "tries", "at", "next_try", "error"],
         False, "deliveries")  # fmt: skip


def _delivery_json(d: DeliveryRow) -> dict[str, Any]:
    return {
        **vars(d),
        "due_at": iso(d.due_at),
        "sent_at": iso(d.sent_at),
        "next_try": iso(d.next_try),
    }


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
