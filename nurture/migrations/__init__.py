"""Alembic migrations, run by `nurture db upgrade`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from nurture.config import Settings
from nurture.db import make_engine

HERE = Path(__file__).parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(database_url: str, revision: str = "head", settings: Settings | None = None) -> None:
    """Create or migrate the schema at `database_url`. Its own engine, made here: the
    migrations are the one place allowed to create a SQLite file that is not there yet.
    `settings` give the data key that seals existing rows (default: the environment's)."""
    _migrate(database_url, settings, lambda cfg: command.upgrade(cfg, revision))


def downgrade(database_url: str, revision: str, settings: Settings | None = None) -> None:
    _migrate(database_url, settings, lambda cfg: command.downgrade(cfg, revision))


def _migrate(database_url: str, settings: Settings | None, run: Callable[[Config], None]) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:
                # Rebuilding a table (SQLite's only way to change one) drops the old copy;
                # with foreign keys on, that drop would first delete every row that points
                # at it. Off on this connection only, checked again at the end.
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            cfg.attributes["settings"] = settings
            run(cfg)
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                raise RuntimeError("the migration left rows pointing at nothing; rolled back")
            connection.commit()
    finally:
        engine.dispose()


def current_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())
