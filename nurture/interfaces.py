"""The interfaces a runtime is made of, below everything that uses them: the one clock and
the one mail interface (what every mail backend does, and the errors it may raise). This
file knows no implementation: those are nurture/clock.py and nurture/mail/backends.py."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from types import TracebackType
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class MailError(Exception):
    pass


class TransientMailError(MailError):
    """Try again later. `throttle` says the server asked us to slow down (a 421 or 454
    whose text speaks of rates or limits): the whole pipeline backs off, not just this
    message."""

    def __init__(self, message: str, *, throttle: bool = False) -> None:
        super().__init__(message)
        self.throttle = throttle


class ConnectionLostError(TransientMailError):
    """This server, not this message: the connection closed (a 421, a dropped socket) or
    could not be opened (`at_connect`: then nothing of the message was sent). The next
    send() opens a new connection."""

    def __init__(self, message: str, *, throttle: bool = False, at_connect: bool = False) -> None:
        super().__init__(message, throttle=throttle)
        self.at_connect = at_connect


class PermanentMailError(MailError):
    """The server will not take this message. `bounce` says whether the fault is the
    address (the subscriber must stop receiving mail) or something else, such as our own
    authentication being refused (5.7.x), where marking readers bounced would be wrong."""

    def __init__(self, message: str, *, bounce: bool = False) -> None:
        super().__init__(message)
        self.bounce = bounce


class MailBackend(Protocol):
    # Connections opened since __enter__ (0 for a backend without any): how a batch tells
    # a relay that keeps dropping us from one that dropped us once.
    connections: int

    def __enter__(self) -> MailBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, msg: EmailMessage) -> None: ...

    def forget(self, address: str) -> list[str]:
        """Remove the copies this backend keeps of mail to `address` (the file outbox keeps
        every email; a relay keeps none here) and say where they were."""
        ...
