"""Signup rate limits: who a limit counts, and the counters without Redis.

Who: the client's address, an IPv6 one by its /64 (a household, a phone or a rented server
is given a whole /64, and could otherwise sign up from a new address for every request),
and only as a keyed hash, so the counters (in Redis or in the database) never hold a raw
address. Counters end with their window and are deleted every minute (`purge_expired`).

Flask-Limiter keeps counters in Redis when there is one. Without Redis (the embedded setup
of `nurture run`), its in-memory storage would count per gunicorn worker, so the limit would
multiply by the number of workers; this storage keeps them in the `rate_limits` table
instead. Registered with the `limits` library under the scheme nurture+db://.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time

from flask import request
from limits.storage import Storage
from sqlalchemy import Float, Integer, String, delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from nurture.context import current
from nurture.db import Base, transaction

SCHEME = "nurture+db"


def client_group(address: str) -> str:
    """The address a limit counts: IPv4 as it is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_key() -> str:
    """Flask-Limiter's key for this request's client: a keyed hash of its group."""
    group = client_group(request.remote_addr or "")
    key = current().settings.secret.encode()
    return hmac.new(key, f"nurture.limit:{group}".encode(), hashlib.sha256).hexdigest()[:32]


def purge_expired() -> int:
    """Counters whose window has ended: they count nothing any more."""
    with transaction() as s:
        result = s.execute(delete(RateLimit).where(RateLimit.expires_at <= time.time()))
    return int(result.rowcount)  # type: ignore[attr-defined]


class RateLimit(Base):
    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)  # epoch seconds (the limiter's clock)


class DatabaseStorage(Storage):
    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: object):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return DBAPIError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        at = time.time()
        for _ in range(3):  # two first requests may race to insert the same key
            try:
                with transaction() as s:
                    return self._incr(s, key, at, expiry, amount)
            except IntegrityError:
                continue
        raise RuntimeError("rate limit counter kept racing")

    @staticmethod
    def _incr(s: Session, key: str, at: float, expiry: int, amount: int) -> int:
        row = s.get(RateLimit, key, with_for_update=True)
        if row is None or row.expires_at <= at:
            if row is not None:
                s.delete(row)
                s.flush()
            s.add(RateLimit(key=key, count=amount, expires_at=at + expiry))
            s.flush()
            return amount
        count = row.count + amount
        # Incremented in SQL, so concurrent workers add up (PostgreSQL also locked the row).
        s.execute(
            update(RateLimit)
            .where(RateLimit.key == key)
            .values(count=RateLimit.count + amount)
            .execution_options(synchronize_session=False)
        )
        return count

    def get(self, key: str) -> int:
        with transaction() as s:
            row = s.execute(
                select(RateLimit.count, RateLimit.expires_at).where(RateLimit.key == key)
            ).one_or_none()
        if row is None or row[1] <= time.time():
            return 0
        return int(row[0])

    def get_expiry(self, key: str) -> float:
        with transaction() as s:
            expires = s.scalar(select(RateLimit.expires_at).where(RateLimit.key == key))
        return float(expires) if expires is not None else time.time()

    def check(self) -> bool:
        try:
            with transaction() as s:
                s.execute(select(RateLimit.key).limit(1))
        except DBAPIError:
            return False
        return True

    def reset(self) -> int | None:
        with transaction() as s:
            result = s.execute(delete(RateLimit))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def clear(self, key: str) -> None:
        with transaction() as s:
            s.execute(delete(RateLimit).where(RateLimit.key == key))
