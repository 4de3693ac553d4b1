"""The keys made for one database, kept in it sealed under the data key (today one: the
blind-index key; nurture/encryption.py says why it outlives data-key rotations)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Connection, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from nurture.clock import now
from nurture.config import KEY_BYTES
from nurture.db import Base, insert_ignoring_conflict
from nurture.encryption import DataKey, DataKeys, SealError, open_sealed
from nurture.errors import ConfigError

INDEX_KEY = "index"  # the row holding the blind-index key
INDEX_PLACE = "data_keyring.index"


class Keyring(Base):
    """Keys made for this database, each sealed under the data key (today: the index key)."""

    __tablename__ = "data_keyring"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=now)


def load_keys(conn: Connection, keys: list[DataKey]) -> DataKeys:
    """The runtime's keys for the database on `conn`: its index key opened (made on first
    use). A key that opens nothing here stops start-up with one line naming the variable."""
    sealed = conn.scalar(select(Keyring.sealed).where(Keyring.name == INDEX_KEY))
    if sealed is None:
        fresh = keys[0].seal(secrets.token_bytes(KEY_BYTES), INDEX_PLACE)
        conn.execute(insert_ignoring_conflict(conn, Keyring), [_keyring_row(fresh)])
        sealed = conn.scalar(select(Keyring.sealed).where(Keyring.name == INDEX_KEY))
        assert sealed is not None
    try:
        index_key = open_sealed(keys, sealed, INDEX_PLACE)
    except SealError:
        raise ConfigError(
            "NURTURE_DATA_KEY: this database's personal data was sealed under another key; "
            "set that key again (or list it in NURTURE_DATA_KEY_PREVIOUS and run "
            "`nurture keys rotate`)"
        ) from None
    return DataKeys(keys, index_key)


def _keyring_row(sealed: str) -> dict[str, object]:
    return {"name": INDEX_KEY, "sealed": sealed, "created_at": now()}


def reseal_keyring(conn: Connection, keys: DataKeys) -> bool:
    """Seal the index key under the current data key (rotation). False if it already was."""
    sealed = conn.scalar(select(Keyring.sealed).where(Keyring.name == INDEX_KEY))
    if sealed is None or keys.is_current(sealed):
        return False
    fresh = keys.current.seal(open_sealed(keys.keys, sealed, INDEX_PLACE), INDEX_PLACE)
    conn.execute(update(Keyring).where(Keyring.name == INDEX_KEY).values(sealed=fresh))
    return True
