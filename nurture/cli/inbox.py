"""`nurture inbox check`: read what came back (bounces, complaints, replies)."""

from __future__ import annotations

import json

import click

from nurture.cli.output import json_option

# How each kind is named in the one-line summary (singular, plural).
LABELS = {
    "hard_bounce": ("hard bounce", "hard bounces"),
    "soft_bounce": ("soft bounce", "soft bounces"),
    "delayed": ("delay warning", "delay warnings"),
    "complaint": ("complaint", "complaints"),
    "reply": ("reply", "replies"),
    "auto_reply": ("automatic reply", "automatic replies"),
    "other": ("other message", "other messages"),
    "broken": ("unreadable message", "unreadable messages"),
}


def register(cli: click.Group) -> None:
    cli.add_command(inbox)


@click.group()
def inbox() -> None:
    """The mailbox at NURTURE_INBOX_URL, where bounces, complaints and replies arrive.

    Example: nurture inbox check
    """


def summary(counts: dict[str, int]) -> str:
    total = sum(n for k, n in counts.items() if k != "unmatched")
    if not total:
        return "no new messages"
    parts = [
        f"{n} {LABELS[k][0] if n == 1 else LABELS[k][1]}"
        for k, n in counts.items()
        if k in LABELS and n
    ]
    line = f"{total} new message{'' if total == 1 else 's'}: " + ", ".join(parts)
    if counts.get("unmatched"):
        line += f" ({counts['unmatched']} naming no email of ours: left alone)"
    return line


@inbox.command("check")
@json_option
def check(as_json: bool) -> None:
    """One pass over the inbox: a bounce ends a dead address (soft ones only when they
    repeat over days), a spam complaint stops all mail to that person, and a reader's reply
    does what the sequence's on_reply says (pause by default). Prints counts by kind, never
    an address; handled messages are flagged and not read again. Beat runs this every
    minute when NURTURE_INBOX_URL is set.

    Example: nurture inbox check
    """
    from nurture.feedback.inbox import check_inbox

    counts = check_inbox().as_dict()
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(summary(counts))
