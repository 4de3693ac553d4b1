"""The `nurture` command. Each command group lives in its own module and is a thin layer
over the services: parse options, call one service in one transaction, print the result."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from importlib import import_module
from typing import Any

import click
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from nurture.cli.output import say
from nurture.config import load_settings
from nurture.context import current, use
from nurture.errors import NurtureError
from nurture.runtime import Runtime, create_runtime

COMMAND_MODULES = [
    "nurture.cli.engine",
    "nurture.cli.sequences",
    "nurture.cli.subscribers",
    "nurture.cli.articles",
    "nurture.cli.content",
    "nurture.cli.demo",
    "nurture.cli.reports",
    "nurture.cli.inbox",
    "nurture.cli.events",
    "nurture.cli.keys",
    "nurture.cli.doctor",
    "nurture.cli.operators",
]


class NurtureGroup(click.Group):
    """The root command: database trouble (nothing listening, no schema yet) reaches the
    operator as one line and exit 1, like any other user error, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError, InterfaceError) as exc:
            raise database_error(exc) from None


def database_error(exc: DBAPIError) -> NurtureError:
    # Never the URL itself (it may hold a password) nor the statement (it may hold data).
    detail = str(exc.orig).lower()
    if "no such table" in detail or ("does not exist" in detail and "relation" in detail):
        return NurtureError("the database has no tables yet: run `nurture db upgrade` first")
    try:
        url = make_url(current().settings.database_url)
        where = (
            f"{url.get_backend_name()} at {url.host or 'localhost'}:{url.port or 'default port'}"
        )
        if url.get_backend_name() == "sqlite":
            where = f"sqlite file {url.database}"
    except NurtureError:
        where = "the configured database"
    reason = "connection refused" if "refused" in detail else type(exc.orig).__name__
    return NurtureError(f"cannot use the database ({where}): {reason}; check NURTURE_DATABASE_URL")


@click.group(
    cls=NurtureGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example: nurture db upgrade && nurture sequences apply templates/sequences",
)
@click.version_option(package_name="nurture")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """nurture: timed, consent-first email sequences.

    Settings come from NURTURE_* environment variables (or a .env file); with none set,
    everything runs embedded: SQLite, no Redis, mail written to ./outbox.
    """
    # One runtime for this invocation, from the environment; a caller that already has one
    # (the tests, the demo) passes it as the context object. A bad setting stops here, with
    # one line, before any command runs.
    if not isinstance(ctx.obj, Runtime):
        ctx.obj = create_runtime(load_settings())
        ctx.call_on_close(ctx.obj.close)
    ctx.with_resource(use(ctx.obj))


# An example is a command to copy, so it is never re-wrapped by Click (which breaks lines at
# hyphens: `partner-` / `refuses-therapy`); a long one continues on the next line after a
# backslash, as a shell reads it. Fits 80 columns with the help's indent.
EXAMPLE_WIDTH = 76
_EXAMPLE = re.compile(r"^Example: .*$", re.M)


def _example_block(match: re.Match[str]) -> str:
    lines = textwrap.wrap(
        match.group(0),
        EXAMPLE_WIDTH - 2,
        subsequent_indent="    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\b\n" + " \\\n".join(lines)


def _first_sentence(help_text: str) -> str:
    words = inspect.cleandoc(help_text).split("\n\n")[0].split()
    end = next((i for i, w in enumerate(words) if w.endswith(".")), len(words) - 1)
    return " ".join(words[: end + 1])


def _tidy_help(cmd: click.Command) -> None:
    """Command lists show each command's first sentence whole, wrapped to the terminal,
    instead of cut with "..." at a width that leaves three words; examples stay whole."""
    if cmd.help:
        cmd.short_help = cmd.short_help or _first_sentence(cmd.help)
        cmd.help = _EXAMPLE.sub(_example_block, inspect.cleandoc(cmd.help))
    if cmd.epilog:
        cmd.epilog = _EXAMPLE.sub(_example_block, cmd.epilog)
    for param in cmd.params:
        # An optional argument given a metavar ("ID") reads as required in the usage line.
        if isinstance(param, click.Argument) and not param.required and param.metavar:
            param.metavar = f"[{param.metavar.strip('[]')}]"
        # A long list of choices as the metavar pushes the option past 80 columns: name the
        # value instead, and list the choices in the help, which wraps.
        choices = getattr(param.type, "choices", None)
        if isinstance(param, click.Option) and choices and param.metavar is None:
            listed = ", ".join(str(c) for c in choices)
            if len(listed) > 30 and param.name:
                param.metavar = param.name.upper()
                param.help = f"{param.help or ''} One of: {listed}.".strip()
    for sub in getattr(cmd, "commands", {}).values():
        _tidy_help(sub)


for _name in COMMAND_MODULES:
    import_module(_name).register(cli)
_tidy_help(cli)


def exit_code(exc: BaseException) -> int:
    """The contract's exit code for an error escaping a command, its one line printed."""
    if isinstance(exc, NurtureError):
        say(f"Error: {exc}", err=True)
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
