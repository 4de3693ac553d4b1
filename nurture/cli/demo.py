"""`nurture demo`: see a whole sequence arrive in a minute or two."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.table import Table
from rich.text import Text

from nurture.cli.output import clean, console
from nurture.demo import READER, READER_ZONE, DemoResult, SentEmail, run_demo


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option(
    "--day-seconds",
    type=click.FloatRange(0.5, 3600),
    default=3.0,
    show_default=True,
    help="Real seconds per simulated day.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the demo's database and outbox here instead of a temporary folder.",
)
def demo(day_seconds: float, keep: Path | None) -> None:
    """Play the default sequence on a throw-away embedded setup, days compressed to seconds.

    A demo reader signs up through the real web form, confirms by the button in the
    confirmation email, and every step is sent by the real dispatcher into an outbox of
    .eml and .html files. After the second email the reader replies (a simulated reply,
    put in the demo's inbox folder and read by the same code as `nurture inbox check`):
    the series pauses until the practice resumes it two days later. Nothing touches your
    own database or settings.

    Example: nurture demo --day-seconds 2
    """
    zone = ZoneInfo(READER_ZONE)
    console.print(
        f"[bold]nurture demo[/bold]: {READER} signs up on the form and confirms; "
        f"one simulated day lasts {day_seconds:g} s.\n"
    )
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    result = run_demo(day_seconds, _Shower(zone).show, workdir=keep, on_note=_note)
    _summary(result, zone)
    if not result.complete:
        raise click.ClickException("the demo did not see every step arrive")
    if not (result.paused and result.resumed):
        raise click.ClickException("the demo did not see the reply pause the series")


class _Shower:
    """Prints each email as it arrives, by the reader's day (day 1 is the first email's)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.first: SentEmail | None = None

    def show(self, sent: SentEmail, _result: DemoResult) -> None:
        self.first = self.first or sent
        local = sent.sent_at.astimezone(self.zone)
        day = (local.date() - self.first.sent_at.astimezone(self.zone).date()).days + 1
        console.print(
            Text.assemble(
                f"  day {day:>2}  {local:%a %d %b %H:%M} {local.tzname()}  ",
                (clean(sent.step), "bold"),
                f"  “{clean(sent.subject)}”",
            ),
            overflow="ignore",
            crop=False,
        )
        # Full paths, on lines of their own: the outbox is in a folder the user is not in,
        # and a path cut or wrapped by the terminal cannot be pasted into a mail client.
        for path in (sent.eml, sent.html):
            console.print(Text(f"          {path.resolve()}", style="dim"), soft_wrap=True)


def _note(text: str) -> None:
    # Called while the demo's runtime is current: its fast clock says the reader's time.
    from nurture.clock import now

    local = now().astimezone(ZoneInfo(READER_ZONE))
    console.print(f"          {local:%a %d %b %H:%M}  [italic]{text}[/italic]", crop=False)


def _summary(result: DemoResult, zone: ZoneInfo) -> None:
    table = Table(title="summary", show_lines=False)
    for col in ("step", "sent (reader's time)", "subject"):
        table.add_column(col)
    for sent in result.sent:
        table.add_row(
            Text(clean(sent.step)),
            f"{sent.sent_at.astimezone(zone):%a %d %b %H:%M}",
            Text(clean(sent.subject)),
        )
    console.print(table)
    console.print(
        f"{len(result.sent)} of {len(result.steps)} emails in {result.real_seconds:.0f} s. "
        f"Open them: {(result.workdir / 'outbox').resolve()}",
        soft_wrap=True,
    )
