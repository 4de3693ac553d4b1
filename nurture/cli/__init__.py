"""The `nurture` command. Each command group lives in its own module and is a thin layer
over the services: parse options, call one service in one transaction, print the result."""

from __future__ import annotations

import sys
from importlib import import_module

import click

from nurture.errors import NurtureError

COMMAND_MODULES = [
    "nurture.cli.engine",
    "nurture.cli.sequences",
    "nurture.cli.subscribers",
    "nurture.cli.articles",
    "nurture.cli.content",
    "nurture.cli.demo",
    "nurture.cli.reports",
]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example: nurture db upgrade && nurture sequences apply templates/sequences",
)
@click.version_option(package_name="nurture")
def cli() -> None:
    """nurture: timed, consent-first email sequences.

    Settings come from NURTURE_* environment variables (or a .env file); with none set,
    everything runs embedded: SQLite, no Redis, mail written to ./outbox.
    """


for _name in COMMAND_MODULES:
    import_module(_name).register(cli)


def exit_code(exc: BaseException) -> int:
    """The contract's exit code for an error escaping a command, its one line printed."""
    if isinstance(exc, NurtureError):
        click.echo(f"Error: {exc}", err=True)
        return 1
    if isinstance(exc, click.exceptions.Abort):
        click.echo("Aborted.", err=True)
        return 1
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    raise exc


def main() -> None:
    try:
        result = cli.main(standalone_mode=False)
    except (NurtureError, click.exceptions.Abort, click.ClickException, KeyboardInterrupt) as exc:
        sys.exit(exit_code(exc))
    # standalone_mode=False returns the exit code of `--help` and friends.
    sys.exit(result if isinstance(result, int) else 0)
