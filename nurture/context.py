"""The running nurture: the settings, database, clock, mail and task queue of one process's work.

`nurture.runtime.create_runtime(settings)` builds a Runtime; whoever does the work makes it
current for that work with `use(runtime)`: the web app for each request, a Celery task for
its run, the `nurture` command for its invocation, a test for its body. Code below reads it
with `current()`, the way Flask code reads `current_app`: nothing is built at import, two
runtimes (two tests, two databases) never share an engine or an outbox, and a test replaces
the clock or the mail of its own runtime without reaching into a module.

The interfaces it names (Clock, MailBackend) live below it, in nurture/interfaces.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from nurture.config import Settings
from nurture.encryption import DataKeys
from nurture.errors import NurtureError
from nurture.interfaces import Clock, MailBackend

if TYPE_CHECKING:
    from celery import Celery


T = TypeVar("T")


@dataclass(eq=False)
class Runtime:
    """What one nurture needs to do its work. Built by nurture.runtime.create_runtime."""

    settings: Settings
    clock: Clock
    # The database opens on first use: `nurture sequences --help` or a web page that never
    # reads a row need no database, a missing SQLite file is reported only when needed, and
    # each prefork worker child opens its own connections rather than inheriting its parent's.
    # Opening it also opens the data keys (nurture/encryption.py): before any transaction,
    # so reading a sealed value never needs a second connection inside one.
    open_database: Callable[[], tuple[Engine, sessionmaker[Session], DataKeys]]
    # A new backend per batch: an SMTP backend holds one connection for its batch.
    open_mail: Callable[[], MailBackend]
    make_celery: Callable[[Runtime], Celery]
    _kept: dict[str, Any] = field(default_factory=dict, repr=False)
    _keeping: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def engine(self) -> Engine:
        return self._database()[0]

    def session(self) -> Session:
        return self._database()[1]()

    @property
    def data_keys(self) -> DataKeys:
        """The keys that seal and open personal data in this runtime's database."""
        return self._database()[2]

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self.session() as s, s.begin():
            yield s

    def mail(self) -> MailBackend:
        return self.open_mail()

    @property
    def celery(self) -> Celery:
        return self.kept("celery", lambda: self.make_celery(self))

    def enqueue(self, task: str, *args: Any) -> None:
        """Hand work to the workers by task name. A signature runs a task registered in this
        process (eagerly, when the app says so) and otherwise just sends it, so the web and
        the command line never import the workers."""
        self.celery.signature(task, args=args).delay()

    def kept(self, name: str, build: Callable[[], T]) -> T:
        """What `build` makes, made once for this runtime and kept for its life: the database,
        the Celery app, and things worth keeping that follow from the settings (the send
        limiter and its poll state, the DKIM key). Two threads asking first get one. A new
        runtime (new settings, a new test) builds its own."""
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
            database[0].dispose()

    def _database(self) -> tuple[Engine, sessionmaker[Session], DataKeys]:
        return self.kept("database", self.open_database)


_current: ContextVar[Runtime] = ContextVar("nurture_runtime")


def current() -> Runtime:
    """The runtime of the work under way. Raises when none was made current: code that runs
    outside a request, a task, a command or a test has no settings to go by."""
    try:
        return _current.get()
    except LookupError:
        raise NurtureError(
            "no nurture runtime is current: build one with create_runtime() and `use` it"
        ) from None


@contextmanager
def use(runtime: Runtime) -> Iterator[Runtime]:
    """Make `runtime` current for the block (a request, a task, a command, a test)."""
    token = _current.set(runtime)
    try:
        yield runtime
    finally:
        _current.reset(token)


def bind(runtime: Runtime) -> Callable[[], None]:
    """Make `runtime` current until the returned function is called (for hooks that come in
    pairs, such as Flask's app context push and pop)."""
    token = _current.set(runtime)
    return lambda: _current.reset(token)
