"""The running nurture: what one process's work needs, built in one place.

`create_runtime(settings)` makes a Runtime: its settings and clock at once, the rest on first
use (the database with its data keys, the mail backend, the Celery app), so
`nurture sequences --help` or a page that reads no row needs no database, and each prefork
worker child opens its own connections. Whoever does the work makes the runtime current for
that work (nurture/context.py): the web app for each request, a Celery task for its run, the
`nurture` command for its invocation, a test for its body. Two runtimes (two tests, two
databases) never share an engine or an outbox. Flask's `examples/celery` builds its app the
same way: one short function, the parts made by the code that knows them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from celery import Celery
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from nurture import db
from nurture.celery_app import make_celery
from nurture.clock import clock_for
from nurture.config import Settings
from nurture.encryption import DataKeys, configured_keys, warn_dev_key
from nurture.events.outbox import capture
from nurture.interfaces import Clock, MailBackend
from nurture.keyring import load_keys
from nurture.mail.backends import MemoryBackend, backend_from_url

T = TypeVar("T")


def create_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """A runtime for `settings`. Nothing connects yet: the database opens on first use."""
    backend_from_url(settings.mail_url)  # a bad mail URL is said now, not at the first send
    return Runtime(settings=settings, clock=clock or clock_for(settings.clock))


@dataclass(frozen=True)
class Database:
    engine: Engine
    writing: sessionmaker[Session]  # may write: on SQLite, BEGIN IMMEDIATE (nurture/db.py)
    reading: sessionmaker[Session]  # only reads: never waits for a writer
    keys: DataKeys  # opened with the database, before any transaction needs them


def open_database(settings: Settings) -> Database:
    engine, writing, reading = db.open_database(settings.database_url)
    # Event webhooks are written to their outbox in the flush that records the event.
    event.listen(writing, "before_flush", capture)
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
    return Database(engine, writing, reading, opened)


@dataclass(eq=False)
class Runtime:
    settings: Settings
    clock: Clock
    _kept: dict[str, Any] = field(default_factory=dict, repr=False)
    _keeping: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def database(self) -> Database:
        return self.kept("database", lambda: open_database(self.settings))

    @property
    def engine(self) -> Engine:
        return self.database.engine

    @property
    def data_keys(self) -> DataKeys:
        """The keys that seal and open personal data in this runtime's database."""
        return self.database.keys

    def session(self) -> Session:
        return self.database.writing()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self.database.writing() as s, s.begin():
            yield s

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads (rolled back at the end)."""
        with self.database.reading() as s, s.begin():
            yield s
            s.rollback()

    def mail(self) -> MailBackend:
        """A backend for one batch (an SMTP backend holds one connection for its batch); the
        memory backend is one for the runtime's whole life: tests read its outbox."""
        if self.settings.mail_url.startswith("memory:"):
            return self.kept("mail", MemoryBackend)
        return backend_from_url(self.settings.mail_url)

    @property
    def celery(self) -> Celery:
        return self.kept("celery", lambda: make_celery(self))

    def enqueue(self, task: str, *args: Any) -> None:
        """Hand work to the workers by task name. A signature runs a task registered in this
        process (eagerly, when the app says so) and otherwise just sends it, so the web and
        the command line never import the workers."""
        self.celery.signature(task, args=args).delay()

    def kept(self, name: str, build: Callable[[], T]) -> T:
        """What `build` makes, made once for this runtime and kept for its life: the database,
        the Celery app, and things worth keeping that follow from the settings (the send
        limiter and its poll state, the DKIM key). Two threads asking first get one."""
        with self._keeping:
            if name not in self._kept:
                self._kept[name] = build()
            return cast(T, self._kept[name])

    def close(self) -> None:
        """Give back connections (the end of a test, of a demo, of a command)."""
        with self._keeping:
            database = self._kept.pop("database", None)
            self._kept.clear()
        if database is not None:
            database.engine.dispose()
