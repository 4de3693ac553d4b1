"""What a check finds: ok, warn or fail, about what, and in the operator's words what to
change. One Finding per line of `nurture doctor`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"  # works, or cannot be checked, but worth a look
    FAIL = "fail"  # mail will be refused, junked or unsafe until this is fixed


@dataclass(frozen=True)
class Finding:
    status: Status
    check: str  # relay, spf, dkim, dmarc, base-url, one-click, keys
    subject: str  # what was checked: a domain, the relay's host:port, a URL, a variable
    message: str  # what is wrong and what to change (or what is right)

    @property
    def name(self) -> str:
        return f"{self.check} {self.subject}" if self.subject else self.check

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "check": self.check,
            "subject": self.subject,
            "message": self.message,
        }


def ok(check: str, subject: str, message: str) -> Finding:
    return Finding(Status.OK, check, subject, message)


def warn(check: str, subject: str, message: str) -> Finding:
    return Finding(Status.WARN, check, subject, message)


def fail(check: str, subject: str, message: str) -> Finding:
    return Finding(Status.FAIL, check, subject, message)
