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
from nurture.interfaces import MailBackend
from nurture.mail.backends import MemoryBackend, backend_from_url
from nurture.subscribers.event_webhooks import capture


def create_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """A runtime for `settings`. Nothing connects yet: the database opens on first use."""

    def database() -> tuple[Engine, sessionmaker[Session]]:
        engine, sessions = open_database(settings.database_url)
        # Event webhooks are written to their outbox in the flush that records the event.
        event.listen(sessions, "before_flush", capture)
        return engine, sessions

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
