"""Running the `nurture` command in-process, with the exit codes of the real console script."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from nurture.cli import cli, exit_code
from nurture.cli.output import FORCE_TTY_ENV
from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import Base
from nurture.errors import NurtureError
from nurture.runtime import Runtime
from tests.web_support import drain as sent_in_one_pass

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(*args: str, input: str | None = None, terminal: bool = False) -> Ran:
    """Like `nurture ARGS...`: 0 ok, 1 user error (one line on stderr), 2 usage error.
    Output goes to a pipe (TSV listings) unless terminal=True (tables, as a person sees)."""
    runner = CliRunner()
    env = {FORCE_TTY_ENV: "1" if terminal else None}
    with runner.isolation(input=input, env=env) as (out, err, _):
        try:
            # The test's own runtime (database, clock, outbox), if it has one, as the command's.
            rv = cli.main(list(args), prog_name="nurture", standalone_mode=False, obj=_runtime())
            code = rv if isinstance(rv, int) else 0
        except (NurtureError, click.ClickException, click.exceptions.Abort) as exc:
            code = exit_code(exc)
        sys.stdout.flush()
        sys.stderr.flush()
        return Ran(code, out.getvalue().decode(), err.getvalue().decode())


def _runtime() -> Runtime | None:
    try:
        return current()
    except NurtureError:
        return None


def drain() -> int:
    """One inline dispatch pass; returns how many were sent."""
    return len(sent_in_one_pass())


def drain_minutes(clock: FrozenClock, minutes: int) -> int:
    sent = 0
    for _ in range(minutes):
        sent += drain()
        clock.advance(timedelta(minutes=1))
    return sent


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for 'nothing changed' checks."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted(
                    (tuple(r) for r in conn.execute(text(f'SELECT * FROM "{t.name}"'))), key=repr
                )
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def sequence_copy(tmp: Path, name: str = "quick") -> Path:
    """A writable copy of a fixture sequence folder."""
    dest = tmp / "seqs" / name
    shutil.copytree(FIXTURES / "sequences" / name, dest)
    return dest
