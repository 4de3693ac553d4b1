"""`nurture init` and `nurture keys ...`: the secret key and the data key of an install."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from dotenv import dotenv_values

from nurture.cli.subscribers import progress_bar
from nurture.config import new_data_key
from nurture.errors import NurtureError
from nurture.rotation import rotate, stale_values

ENV_FILE = ".env"


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(keys)


@click.command()
@click.option("--force", is_flag=True, help="Replace an existing .env (its data key is kept).")
def init(force: bool) -> None:
    """Write a .env here with fresh keys: NURTURE_SECRET_KEY (signs the links in emails) and
    NURTURE_DATA_KEY (seals addresses and names in the database). Readable by you only.

    Example: nurture init
    """
    path = Path(ENV_FILE)
    old = dotenv_values(path) if path.exists() else {}
    if path.exists() and not force:
        raise NurtureError(f"{path} exists already: keep it, or replace it with --force")
    previous = [k for k in (old.get("NURTURE_DATA_KEY"), old.get("NURTURE_DATA_KEY_PREVIOUS")) if k]

    lines = [
        "# Made by `nurture init`. Secrets: keep this file to yourself (it is git-ignored).",
        f"NURTURE_SECRET_KEY={secrets.token_hex(32)}",
        f"NURTURE_DATA_KEY={new_data_key()}",
    ]
    if previous:
        # The old data key still opens what it sealed, until `nurture keys rotate` is done.
        lines.append(f"NURTURE_DATA_KEY_PREVIOUS={','.join(previous)}")
    _write_private(path, "\n".join(lines) + "\n")
    click.echo(f"wrote {path} with a new secret key and data key (readable by you only)")
    if previous or Path("nurture.db").exists():
        click.echo("data sealed under the old key: run `nurture keys rotate` to move it over")


def _write_private(path: Path, text: str) -> None:
    # Made 600 before a byte is written: never readable by others, not even for a moment.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@click.group()
def keys() -> None:
    """The data key that seals personal data at rest.

    Example: nurture keys rotate --dry-run
    """


@keys.command("new")
def keys_new() -> None:
    """Print a fresh data key (32 random bytes, urlsafe base64) for NURTURE_DATA_KEY.

    Example: nurture keys new
    """
    click.echo(new_data_key())


@keys.command("rotate")
@click.option("--dry-run", is_flag=True, help="Only count what would be re-sealed.")
def keys_rotate(dry_run: bool) -> None:
    """Re-seal every address, name and event body under NURTURE_DATA_KEY, in batches, while
    nurture runs. Put the old key in NURTURE_DATA_KEY_PREVIOUS first (and restart the
    processes, so they seal new data with the new key); remove it when this is done.

    Example: NURTURE_DATA_KEY_PREVIOUS=<old key> nurture keys rotate
    """
    if dry_run:
        result = rotate(dry_run=True)
        click.echo(f"{result.stale} values would be re-sealed under key {result.key_id}")
        return
    with progress_bar() as bar:
        task = bar.add_task("re-sealing", total=stale_values())
        result = rotate(progress=lambda n: bar.advance(task, n))
    click.echo(f"{result.resealed} values re-sealed under key {result.key_id}")
    if result.left:
        raise NurtureError(f"{result.left} values kept changing; run `nurture keys rotate` again")
    click.echo("every value is sealed under NURTURE_DATA_KEY: NURTURE_DATA_KEY_PREVIOUS may go")
