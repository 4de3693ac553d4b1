"""Personal data sealed at rest (nurture/encryption.py): what the database holds, which keys
open it, what a wrong key does at start-up, and `nurture keys rotate` while mail goes out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from nurture.config import DEV_DATA_KEY, load_settings, new_data_key, weak_data_key
from nurture.context import current
from nurture.db import transaction
from nurture.encryption import DataKey, DataKeys, SealError, key_id
from nurture.errors import ConfigError
from nurture.events.models import OutboxEvent
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Subscriber
from nurture.subscribers.privacy import forget
from nurture.subscribers.suppression import is_suppressed
from tests.cli_helpers import run
from tests.conftest import ROOT, TEST_DATA_KEY, reload_runtime
from tests.web_support import drain


def _keys(*texts: str) -> DataKeys:
    return DataKeys([DataKey.from_text(t) for t in texts], b"i" * 32)


def test_a_sealed_value_opens_only_in_its_place() -> None:
    keys = _keys(new_data_key())
    sealed = keys.seal("dana@example.com", "subscribers.email:aaa")
    assert "dana" not in sealed and sealed.startswith(f"e1:{keys.current.kid}:")
    assert keys.unseal(sealed, "subscribers.email:aaa") == "dana@example.com"
    # The same value copied onto another person's row, or into another column, opens nowhere.
    for elsewhere in ("subscribers.email:bbb", "subscribers.first_name:aaa"):
        with pytest.raises(SealError):
            keys.unseal(sealed, elsewhere)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SealError):
        keys.unseal(tampered, "subscribers.email:aaa")
    # A random nonce per value: the same address twice gives two different values.
    assert keys.seal("dana@example.com", "p") != keys.seal("dana@example.com", "p")


def test_each_value_names_its_key_and_older_keys_still_open() -> None:
    old, new = new_data_key(), new_data_key()
    sealed = _keys(old).seal("Dana", "x")
    assert key_id(sealed) == DataKey.from_text(old).kid
    assert _keys(new, old).unseal(sealed, "x") == "Dana"
    with pytest.raises(SealError, match="NURTURE_DATA_KEY_PREVIOUS"):
        _keys(new).unseal(sealed, "x")


def test_weak_or_published_data_keys_are_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]
) -> None:
    assert weak_data_key(new_data_key()) is None
    assert weak_data_key(DEV_DATA_KEY) == "a published example key"
    assert "random bytes" in (weak_data_key("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=") or "")
    assert "base64" in (weak_data_key("not a key!") or "")
    monkeypatch.setenv("NURTURE_ENV", "production")
    monkeypatch.setenv("NURTURE_SECRET_KEY", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c")
    monkeypatch.delenv("NURTURE_DATA_KEY")
    with pytest.raises(ConfigError, match=r"^NURTURE_DATA_KEY is required"):
        load_settings()
    monkeypatch.setenv("NURTURE_DATA_KEY", DEV_DATA_KEY)
    with pytest.raises(ConfigError, match=r"^NURTURE_DATA_KEY is a published example key"):
        load_settings()
    monkeypatch.setenv("NURTURE_DATA_KEY", "short")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith("NURTURE_DATA_KEY: ") and "short" not in str(err.value)


def test_the_database_holds_no_address_or_name(db: str, quick_sequence: str) -> None:
    with transaction() as s:
        add_subscriber(
            s, "Dana@Example.com", get_sequence(s, "quick"), first_name="Dana", confirmed=True
        )
    with transaction() as s:
        rows = s.execute(text("SELECT * FROM subscribers")).mappings().all()
        assert len(rows) == 1
        assert not any("dana" in str(v).lower() for v in rows[0].values())
        sub = find_subscriber(s, "dana@EXAMPLE.com")  # found by its blind index
        assert sub is not None and (sub.email, sub.first_name) == ("dana@example.com", "Dana")


def test_a_key_that_opens_nothing_stops_start_up_with_one_line(
    db: str, quick_sequence: str, tmp_path: Path
) -> None:
    with transaction() as s:
        add_subscriber(s, "dana@example.com", get_sequence(s, "quick"), confirmed=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "NURTURE_DATABASE_URL": db,
        "NURTURE_DATA_KEY": new_data_key(),  # not the key this database was sealed under
        "NURTURE_SECRET_KEY": "test-secret-key-0123456789",
        "NURTURE_MAIL_URL": "memory://",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nurture.cli", "subscribers", "list"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("Error: NURTURE_DATA_KEY: ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""  # no list, and never a wrong name


def _everyone_under(key: str) -> set[str | None]:
    with transaction() as s:
        return {key_id(v) for v in s.scalars(select(Subscriber.email_sealed))}


def test_rotate_reseals_every_value_and_the_old_key_can_go(
    quick_sequence: str, clock: object, outbox: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for i in range(1001):  # more than two batches
            add_subscriber(s, f"r{i}@example.com", seq, first_name=f"R{i}", confirmed=True)
        add_subscriber(s, "gone@example.com", seq, confirmed=True)
        forget(s, "gone@example.com")
    fresh = new_data_key()
    monkeypatch.setenv("NURTURE_DATA_KEY", fresh)
    monkeypatch.setenv("NURTURE_DATA_KEY_PREVIOUS", TEST_DATA_KEY)
    reload_runtime()
    assert run("keys", "rotate", "--dry-run").out == (
        f"2002 values would be re-sealed under key {DataKey.from_text(fresh).kid}\n"
    )
    ran = run("keys", "rotate")
    assert ran.code == 0, ran.err
    assert "2002 values re-sealed" in ran.out
    assert _everyone_under(fresh) == {DataKey.from_text(fresh).kid}
    monkeypatch.delenv("NURTURE_DATA_KEY_PREVIOUS")
    reload_runtime()
    # The old key is gone: every value still opens, every address is still found, and the
    # forgotten one is still refused (the blind index outlives rotations).
    with transaction() as s:
        assert find_subscriber(s, "r1000@example.com").first_name == "R1000"  # type: ignore[union-attr]
        assert is_suppressed(s, "gone@example.com")
    assert len(drain()) == 1001
    assert {m["To"].addresses[0].addr_spec for m in outbox} >= {
        "r0@example.com",
        "r1000@example.com",
    }
    assert run("keys", "rotate").out.startswith("0 values re-sealed")


def test_event_bodies_are_sealed_and_rotate_too(
    db: str, quick_sequence: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURTURE_EVENTS_URL", "https://crm.example.org/hooks")
    monkeypatch.setenv("NURTURE_EVENTS_SECRET", "whsec_" + "a" * 40)
    reload_runtime()
    with transaction() as s:
        add_subscriber(s, "dana@example.com", get_sequence(s, "quick"), confirmed=True)
    with transaction() as s:
        body = s.scalars(select(OutboxEvent.body)).one()
    assert body is not None and "dana" not in body and key_id(body)
    monkeypatch.setenv("NURTURE_DATA_KEY", new_data_key())
    monkeypatch.setenv("NURTURE_DATA_KEY_PREVIOUS", TEST_DATA_KEY)
    reload_runtime()
    assert run("keys", "rotate").code == 0
    with transaction() as s:
        row = s.scalars(select(OutboxEvent)).one()
        assert current().data_keys.is_current(row.body)
        from nurture.events.outbox import open_body

        assert '"email":"dana@example.com"' in (open_body(row) or "")


def test_keys_new_prints_a_strong_key(runtime: object) -> None:
    out = run("keys", "new").out.strip()
    assert weak_data_key(out) is None and out != run("keys", "new").out.strip()


def test_init_writes_private_keys_and_keeps_an_old_data_key(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    assert run("init").code == 0
    env = tmp_path / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    first = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    assert weak_data_key(first["NURTURE_DATA_KEY"]) is None
    assert len(first["NURTURE_SECRET_KEY"]) == 64
    again = run("init")
    assert again.code == 1 and "exists already" in again.err
    assert run("init", "--force").code == 0
    second = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    assert second["NURTURE_DATA_KEY"] != first["NURTURE_DATA_KEY"]
    # What the old key sealed must still open until `keys rotate` has run.
    assert second["NURTURE_DATA_KEY_PREVIOUS"] == first["NURTURE_DATA_KEY"]
    assert ".env" in (ROOT / ".gitignore").read_text().split()
