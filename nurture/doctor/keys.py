"""Are the keys set, and not ones anyone could guess? One row per key in KEYS: the
variable, how to read it from the settings, what makes it weak, and how to make a good one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import SecretStr

from nurture.config import Settings, weak_data_key, weak_secret
from nurture.doctor.report import Finding, fail, ok, warn


class Key(NamedTuple):
    variable: str
    read: Callable[[Settings], SecretStr | None]
    weakness: Callable[[str], str | None]  # why the value is weak, or None; never the value
    make: str  # how the operator makes a good one


KEYS = [
    Key("NURTURE_SECRET_KEY", lambda s: s.secret_key, weak_secret, "openssl rand -hex 32"),
    Key("NURTURE_DATA_KEY", lambda s: s.data_key, weak_data_key, "nurture keys new"),
]


def check_keys(settings: Settings) -> list[Finding]:
    return [check_key(settings, key) for key in KEYS]


def check_key(settings: Settings, key: Key) -> Finding:
    # In development a missing or weak key is expected; it must not go live that way.
    bad = fail if settings.env == "production" else warn
    value = key.read(settings)
    if value is None:
        return bad("keys", key.variable, f"not set: make one with `{key.make}` and set it")
    problem = key.weakness(value.get_secret_value())
    if problem:
        return bad(
            "keys",
            key.variable,
            f"{problem}: before going live, replace it with one from `{key.make}`",
        )
    return ok("keys", key.variable, "set, and not a weak key")
