"""create_runtime(settings): the one place a process's database, clock, mail and task queue
are built. The web app keeps its runtime in `app.extensions["nurture"]`, a worker's is built
by workers/app.py, the `nurture` command builds one per invocation, each test its own."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from nurture.celery_app import make_celery
from nurture.clock import Clock, clock_for
from nurture.config import Settings
from nurture.context import Runtime
from nurture.db import open_database
from nurture.encryption import DataKeys, configured_keys, warn_dev_key
from nurture.events.outbox import capture
from nurture.interfaces import MailBackend
from nurture.keyring import load_keys
from nurture.mail.backends import MemoryBackend, backend_from_url


def create_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """A runtime for `settings`. Nothing connects yet: the database opens on first use."""

    def database() -> tuple[Engine, sessionmaker[Session], DataKeys]:
        engine, sessions = open_database(settings.database_url)
        # Event webhooks are written to their outbox in the flush that records the event.
        event.listen(sessions, "before_flush", capture)
        keys = configured_keys(
            settings.data_key.get_secret_value() if settings.data_key else None,
            settings.previous_data_keys,
            production=settings.env == "production",
        )
        try:
            with engine.begin() as conn:
                opened = load_keys(conn, keys)
        except BaseException:
            engine.dispose()
            raise
        if settings.data_key is None:
            warn_dev_key()
        return engine, sessions, opened

    return Runtime(
        settings=settings,
        clock=clock or clock_for(settings.clock),
        open_database=database,
        open_mail=_mail_opener(settings.mail_url),
        make_celery=make_celery,
    )


def _mail_opener(url: str) -> Callable[[], MailBackend]:
    backend = backend_from_url(url)  # checks the URL now, once
    if isinstance(backend, MemoryBackend):
        # One outbox for the runtime's whole life: tests read what was sent from it.
        return lambda: backend
    return lambda: backend_from_url(url)
