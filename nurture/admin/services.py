"""Operators and the audit log: the service layer under `nurture operators`, `nurture audit`
and the dashboard.

Every operator action is written to the audit log in the same transaction as the change, so
an action that rolled back leaves no entry and one that committed always has one.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.admin.auth import new_setup
from nurture.admin.models import AuditEntry, Operator
from nurture.context import current
from nurture.errors import NotFound, NurtureError
from nurture.subscribers.addresses import normalize_email

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


def setup_url(token: str) -> str:
    return f"{current().settings.base_url.rstrip('/')}/admin/setup/{token}"


def cli_actor() -> str:
    """Who ran a command: the login of the terminal's user, marked as the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[:60]


def any_operator(s: Session) -> bool:
    return s.scalar(select(Operator.id).limit(1)) is not None


def get_operator(s: Session, name: str) -> Operator:
    op = s.scalar(select(Operator).where(Operator.name == name))
    if op is None:
        raise NotFound(f"no operator {name!r} (see `nurture operators list`)")
    return op


def add_operator(s: Session, name: str, email: str, *, by: str) -> str:
    """A new operator; returns their setup link (valid 15 minutes, once)."""
    if not NAME.match(name):
        raise NurtureError(
            "an operator's name is 1 to 60 letters, digits, dots, dashes or underscores"
        )
    address = normalize_email(email)
    if s.scalar(select(Operator.id).where(func.lower(Operator.name) == name.lower())):
        raise NurtureError(f"there is already an operator {name!r}")
    op = Operator(name=name, email=address)
    s.add(op)
    token = new_setup(s, op)
    audit(s, by, "operator added", target=name, via="cli")
    return setup_url(token)


def reset_operator(s: Session, name: str, *, by: str) -> str:
    """A new setup link; their password, second factor and sessions stop working."""
    op = get_operator(s, name)
    token = new_setup(s, op)
    audit(s, by, "operator reset", target=name, via="cli")
    return setup_url(token)


def remove_operator(s: Session, name: str, *, by: str) -> None:
    op = get_operator(s, name)
    s.delete(op)
    audit(s, by, "operator removed", target=name, via="cli")


@dataclass(frozen=True)
class OperatorRow:
    name: str
    email: str
    state: str  # "active", "setup pending", "setup expired"
    second_factor: bool
    created_at: datetime
    last_login_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "state": self.state,
            "second_factor": self.second_factor,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def list_operators(s: Session, at: datetime) -> list[OperatorRow]:
    rows = []
    for op in s.scalars(select(Operator).order_by(Operator.name)):
        if op.password_hash is not None:
            state = "active"
        elif op.setup_expires_at is not None and op.setup_expires_at > at:
            state = "setup pending"
        else:
            state = "setup expired"
        rows.append(
            OperatorRow(op.name, op.email, state, op.totp_enabled, op.created_at, op.last_login_at)
        )
    return rows


# --- audit ----------------------------------------------------------------------------


def audit(
    s: Session,
    operator: str,
    action: str,
    *,
    subscriber_id: int | None = None,
    target: str | None = None,
    via: str = "dashboard",
    detail: dict[str, Any] | None = None,
) -> None:
    s.add(
        AuditEntry(
            operator=operator[:60],
            action=action,
            subscriber_id=subscriber_id,
            target=target[:200] if target else None,
            via=via,
            detail=detail or {},
        )
    )


def by_command(s: Session, action: str, sub_id: int | None, target: str | None = None) -> None:
    """A `nurture subscribers ...` command's entry, in the command's own transaction."""
    audit(s, cli_actor(), action, subscriber_id=sub_id, target=target, via="cli")


def audit_command(action: str, email: str, target: str | None = None) -> None:
    """The entry of a command whose service runs its own transactions: written after it, for
    the person the address names (if still held)."""
    from nurture.db import transaction
    from nurture.subscribers.addresses import find_subscriber

    with transaction() as s:
        sub = find_subscriber(s, email)
        by_command(s, action, sub.id if sub is not None else None, target)


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    operator: str
    action: str
    subscriber_id: int | None
    target: str | None
    via: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "operator": self.operator,
            "action": self.action,
            "subscriber_id": self.subscriber_id,
            "target": self.target,
            "via": self.via,
        }


def audit_log(s: Session, limit: int = 200, before: int | None = None) -> list[AuditRow]:
    """The newest entries first (before an id, to page back)."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    return [
        AuditRow(e.id, e.created_at, e.operator, e.action, e.subscriber_id, e.target, e.via)
        for e in s.scalars(q)
    ]
