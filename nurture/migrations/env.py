from __future__ import annotations

from alembic import context

import nurture.models  # noqa: F401  (registers every table on Base.metadata)
from nurture.db import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    # nurture.migrations.upgrade hands over a connection of its own engine.
    _run(context.config.attributes["connection"])


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
