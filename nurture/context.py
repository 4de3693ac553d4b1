"""The runtime of the work under way: `current()` and `use()`, the way Flask code reads
`current_app`. Whoever does the work makes a runtime (nurture/runtime.py) current for it:
the web app for each request, a Celery task for its run, the `nurture` command for its
invocation, a test for its body. Code below reads it with `current()`; nothing is built at
import, and a test replaces the clock or the mail of its own runtime without reaching into
a module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from nurture.errors import NurtureError

if TYPE_CHECKING:
    # Annotations only (never run): Flask's globals.py types current_app the same way.
    from nurture.runtime import Runtime

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
