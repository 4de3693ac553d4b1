"""Which delivery store a batch uses: the one for the current runtime's database.

Its own module, above the interface (store.py) and both stores, so none imports another back.
"""

from __future__ import annotations

from nurture.db import get_engine
from nurture.delivery.store import DeliveryStore
from nurture.delivery.store_postgres import PostgresStore
from nurture.delivery.store_sqlite import SQLiteStore


def open_store() -> DeliveryStore:
    """The current runtime's database's store, for one batch (use it as a context manager)."""
    if get_engine().dialect.name == "postgresql":
        return PostgresStore()
    return SQLiteStore()
