"""Production refuses published or weak secrets; database errors carry no parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from nurture.config import DEV_SECRET_KEY, load_settings
from nurture.errors import ConfigError
from tests.conftest import ROOT


def _placeholder() -> str:
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("NURTURE_SECRET_KEY="):
            return line.split("=", 1)[1]
    raise AssertionError("no NURTURE_SECRET_KEY in .env.example")


@pytest.mark.parametrize(
    "key",
    [
        DEV_SECRET_KEY,
        "PLACEHOLDER",
        "x7Kq-2z",
        "a" * 40,
        "abababababababababababab",
        "passwordpasswordpassword",
    ],
)
def test_production_refuses_published_and_weak_keys(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], key: str
) -> None:
    key = _placeholder() if key == "PLACEHOLDER" else key
    monkeypatch.setenv("NURTURE_ENV", "production")
    monkeypatch.setenv("NURTURE_SECRET_KEY", key)
    with pytest.raises(ConfigError) as err:
        load_settings()
    line = str(err.value)
    assert line.startswith("NURTURE_SECRET_KEY") and "\n" not in line
    assert key not in line


@pytest.mark.parametrize(
    "key", ["3f9a1c0e5b7d2f4a8c6e1b3d5f7a9c0e", "s3cret-value-0123456789", "Zq8!vR2#pL5@xN9$"]
)
def test_production_accepts_random_keys(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], key: str
) -> None:
    monkeypatch.setenv("NURTURE_ENV", "production")
    monkeypatch.setenv("NURTURE_SECRET_KEY", key)
    assert load_settings().secret == key


def test_development_still_runs_on_the_development_key(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]
) -> None:
    monkeypatch.delenv("NURTURE_SECRET_KEY")
    assert load_settings().secret == DEV_SECRET_KEY


def test_database_errors_carry_no_parameters(db: str) -> None:
    from nurture.db import get_engine, transaction
    from nurture.subscribers.models import Subscriber

    assert get_engine().hide_parameters
    assert Subscriber.__tablename__ == "subscribers"
    with pytest.raises(DBAPIError) as err, transaction() as s:
        s.execute(text("SELECT * FROM no_such_table WHERE x = :v"), {"v": "private.person"})
    assert "private.person" not in str(err.value)
