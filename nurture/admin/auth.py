"""How an operator proves who they are: a one-time setup link, a password (argon2id), a TOTP
second factor with recovery codes, server-side sessions, and growing delays after failures.

Every refusal of a login reads the same and costs the same work, whether the name is unknown,
the password wrong or the code wrong: the answer never tells which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nurture.admin.models import LoginThrottle, Operator, OperatorSession
from nurture.clock import now
from nurture.context import current
from nurture.errors import NurtureError

SETUP_VALID = timedelta(minutes=15)
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
MIN_PASSWORD = 12
RECOVERY_CODES = 8
# Failures allowed before each further try must wait (per account name; per client, more,
# since an office shares one address), and the longest wait.
FREE_FAILURES = 3
FREE_CLIENT_FAILURES = 10
LONGEST_WAIT = timedelta(minutes=15)
# Argon2id with the library's defaults (RFC 9106's second recommendation).
_hasher = PasswordHasher()
# Verified against when the name is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SetupRefused(NurtureError):
    """What was posted to the setup page will not do."""


class LinkRefused(SetupRefused):
    """The setup link is unknown, used or expired."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _keyed(purpose: str, value: str) -> str:
    key = current().settings.secret.encode()
    return hmac.new(key, f"nurture.admin.{purpose}:{value}".encode(), "sha256").hexdigest()


def totp_place(operator_id: int) -> str:
    return f"operators.totp:{operator_id}"


# --- setup ----------------------------------------------------------------------------


def new_setup(s: Session, op: Operator) -> str:
    """A fresh setup link's token for `op` (valid 15 minutes, once), with a fresh TOTP secret.
    Any password, second factor and session they had stop working."""
    token = secrets.token_urlsafe(32)
    op.setup_hash = digest(token)
    op.setup_expires_at = now() + SETUP_VALID
    op.password_hash = None
    op.totp_enabled = False
    op.totp_last_step = 0
    op.recovery_hashes = []
    s.flush()  # the id binds the sealed secret to this row
    op.totp_sealed = current().data_keys.seal(pyotp.random_base32(32), totp_place(op.id))
    s.execute(delete(OperatorSession).where(OperatorSession.operator_id == op.id))
    return token


def setup_operator(s: Session, token: str) -> Operator:
    """The operator this setup link is for, or SetupRefused (unknown, used, or expired)."""
    op = s.scalar(select(Operator).where(Operator.setup_hash == digest(token)))
    if op is None or op.setup_expires_at is None or op.setup_expires_at <= now():
        raise LinkRefused("this setup link is not valid: it was used, or it expired")
    return op


def totp_of(op: Operator) -> pyotp.TOTP:
    if op.totp_sealed is None:
        raise SetupRefused("no second factor is set up")
    return pyotp.TOTP(current().data_keys.unseal(op.totp_sealed, totp_place(op.id)))


def totp_uri(op: Operator) -> str:
    return totp_of(op).provisioning_uri(name=op.name, issuer_name="nurture")


def qr_svg(uri: str) -> str:
    """The QR code as an inline SVG (no image request, nothing the CSP must allow)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))


@dataclass(frozen=True)
class SetupDone:
    recovery_codes: list[str]


def finish_setup(s: Session, token: str, password: str, code: str) -> SetupDone:
    """Set the password and (when a code is given, or always in production) the second
    factor; the link is spent. Returns the recovery codes, shown once."""
    op = setup_operator(s, token)
    if len(password) < MIN_PASSWORD:
        raise SetupRefused(f"choose a password of at least {MIN_PASSWORD} characters")
    production = current().settings.env == "production"
    codes: list[str] = []
    if code.strip() or production:
        if not _code_matches(op, code):
            raise SetupRefused("that code does not match: type the 6 digits your app shows now")
        op.totp_enabled = True
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        op.recovery_hashes = [digest(c) for c in codes]
    op.password_hash = _hasher.hash(password)
    op.setup_hash = None
    op.setup_expires_at = None
    return SetupDone(codes)


def _recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"


def _code_matches(op: Operator, code: str) -> bool:
    """A current TOTP code (one 30-second step either side for clocks a little apart), not
    used before; it is spent by matching."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return False
    totp = totp_of(op)
    at = now()
    step = totp.timecode(at)
    for offset in (-1, 0, 1):
        candidate = step + offset
        if candidate <= op.totp_last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            op.totp_last_step = candidate
            return True
    return False


def _recovery_matches(op: Operator, code: str) -> bool:
    wanted = digest(code.strip().lower())
    for h in op.recovery_hashes or []:
        if hmac.compare_digest(h, wanted):
            op.recovery_hashes = [x for x in op.recovery_hashes if x != h]
            return True
    return False


# --- login ----------------------------------------------------------------------------


def _wait_for(key: str, failures: int) -> timedelta:
    free = FREE_CLIENT_FAILURES if key.startswith("c:") else FREE_FAILURES
    if failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - free + 1)), LONGEST_WAIT)


def _throttles(s: Session, keys: list[str]) -> list[LoginThrottle]:
    rows = []
    for key in keys:
        row = s.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, last_failure_at=now())
            s.add(row)
        rows.append(row)
    return rows


def throttle_keys(name: str, client: str) -> list[str]:
    return [
        "a:" + _keyed("account", name.strip().lower())[:62],
        "c:" + _keyed("client", client)[:62],
    ]


def waiting(s: Session, keys: list[str]) -> timedelta:
    """How long this account or client must still wait before another try."""
    at = now()
    left = timedelta(0)
    for row in s.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys))):
        left = max(left, row.last_failure_at + _wait_for(row.key, row.failures) - at)
    return left


def log_in(s: Session, name: str, password: str, code: str, client: str) -> Operator | None:
    """The operator these details prove, or None (the failure is counted against the name
    and the client; the caller commits it). `client` is the request's keyed client id. Call
    `waiting` first: a name or client that must wait is not even tried."""
    keys = throttle_keys(name, client)
    op = s.scalar(select(Operator).where(Operator.name == name.strip()))
    usable = op is not None and op.password_hash is not None
    try:
        # Always one argon2 verification: an unknown name costs what a wrong password does.
        _hasher.verify(op.password_hash if usable else _DUMMY_HASH, password)  # type: ignore[union-attr,arg-type]
        password_ok = usable
    except (VerificationError, InvalidHashError):
        password_ok = False
    second_ok = True
    if op is not None and op.totp_enabled:
        second_ok = _code_matches(op, code) or (password_ok and _recovery_matches(op, code))
    elif current().settings.env == "production":
        second_ok = False  # production needs a second factor set up
    if op is None or not (password_ok and second_ok):
        for row in _throttles(s, keys):
            row.failures += 1
            row.last_failure_at = now()
        return None
    s.execute(delete(LoginThrottle).where(LoginThrottle.key == keys[0]))
    op.last_login_at = now()
    if _hasher.check_needs_rehash(op.password_hash):  # type: ignore[arg-type]
        op.password_hash = _hasher.hash(password)
    return op


# --- sessions -------------------------------------------------------------------------


def open_session(s: Session, op: Operator) -> str:
    """A new session for `op`; returns the cookie's token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    s.add(
        OperatorSession(
            token_hash=digest(token),
            operator_id=op.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now(),
            last_seen_at=now(),
        )
    )
    return token


def session_for(s: Session, token: str | None) -> OperatorSession | None:
    """The live session this cookie names, touched; an expired one is removed."""
    if not token:
        return None
    row = s.get(OperatorSession, digest(token))
    if row is None:
        return None
    at = now()
    if at - row.last_seen_at > IDLE or at - row.created_at > ABSOLUTE:
        s.delete(row)
        return None
    row.last_seen_at = at
    return row


def close_session(s: Session, token: str | None) -> None:
    if token:
        s.execute(delete(OperatorSession).where(OperatorSession.token_hash == digest(token)))
