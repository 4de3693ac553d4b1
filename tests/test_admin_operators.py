"""Operators from the command line: a one-time setup link, listing, removal, reset, the audit
log; and the setup itself (password, TOTP), as the dashboard's pages call it."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from nurture.admin import auth
from nurture.admin.models import Operator
from nurture.clock import FrozenClock
from nurture.db import reading, transaction
from tests.cli_helpers import run


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_add_prints_a_setup_link_and_list_shows_it_pending(db: str, clock: FrozenClock) -> None:
    ran = run("operators", "add", "robin", "--email", "Robin@Example.org")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("https://nurture.test/admin/setup/")
    assert "15 minutes" in ran.err
    rows = run("operators", "list", "--json").json()
    assert [(r["name"], r["state"], r["second_factor"]) for r in rows] == [
        ("robin", "setup pending", False)
    ]
    clock.advance(timedelta(minutes=16))
    assert run("operators", "list", "--json").json()[0]["state"] == "setup expired"


def test_names_are_unique_and_checked(db: str) -> None:
    assert run("operators", "add", "robin", "--email", "r@example.org").code == 0
    again = run("operators", "add", "Robin", "--email", "r@example.org")
    assert again.code == 1 and "already an operator" in again.err
    bad = run("operators", "add", "robin smith", "--email", "r@example.org")
    assert bad.code == 1 and "letters, digits" in bad.err
    assert run("operators", "remove", "nobody").code == 1


def test_setup_link_works_once_and_expires(db: str, clock: FrozenClock) -> None:
    url = run("operators", "add", "robin", "--email", "r@example.org").out.strip()
    token = _token(url)
    with transaction() as s:
        op = auth.setup_operator(s, token)
        code = auth.totp_of(op).at(clock.now())
    with transaction() as s:
        done = auth.finish_setup(s, token, "correct horse battery", code)
    assert len(done.recovery_codes) == 8
    with transaction() as s, pytest.raises(auth.SetupRefused):
        auth.setup_operator(s, token)
    # reset: a new link, and the old password no longer logs in
    url2 = run("operators", "reset", "robin").out.strip()
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", "", "client") is None
    clock.advance(timedelta(minutes=15, seconds=1))
    with transaction() as s, pytest.raises(auth.SetupRefused):
        auth.setup_operator(s, _token(url2))


def test_totp_codes_work_once_and_recovery_codes_once(db: str, clock: FrozenClock) -> None:
    token = _token(run("operators", "add", "robin", "--email", "r@example.org").out.strip())
    with transaction() as s:
        totp = auth.totp_of(auth.setup_operator(s, token))
        done = auth.finish_setup(s, token, "correct horse battery", totp.at(clock.now()))
    clock.advance(timedelta(seconds=30))
    code = totp.at(clock.now())
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", code, "c") is not None
    with transaction() as s:  # the same code again: refused
        assert auth.log_in(s, "robin", "correct horse battery", code, "c") is None
    recovery = done.recovery_codes[0]
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", recovery, "c") is not None
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", recovery, "c2") is None


def test_failures_make_the_next_try_wait_longer(db: str, clock: FrozenClock) -> None:
    keys = auth.throttle_keys("ghost", "client")
    waits = []
    for _ in range(6):
        with transaction() as s:
            assert auth.log_in(s, "ghost", "wrong password", "", "client") is None
        with reading() as s:
            waits.append(auth.waiting(s, keys).total_seconds())
    assert waits[:2] == [0, 0]
    assert waits[2] > 0 and waits[3] > waits[2] and waits[5] > waits[4]


def test_production_needs_the_second_factor(db: str, clock: FrozenClock, monkeypatch) -> None:
    token = _token(run("operators", "add", "robin", "--email", "r@example.org").out.strip())
    from nurture.context import current

    rt = current()
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={"env": "production"}))
    with transaction() as s, pytest.raises(auth.SetupRefused, match="code"):
        auth.finish_setup(s, token, "correct horse battery", "")


def test_audit_lists_operator_changes(db: str) -> None:
    run("operators", "add", "robin", "--email", "r@example.org")
    run("operators", "reset", "robin")
    assert run("operators", "remove", "robin").code == 0
    rows = run("audit", "--json").json()
    assert [r["action"] for r in rows] == ["operator removed", "operator reset", "operator added"]
    assert all(r["operator"].startswith("cli:") and r["target"] == "robin" for r in rows)
    with reading() as s:
        assert s.scalars(select(Operator)).all() == []
    tsv = run("audit")
    assert tsv.out.splitlines()[0].split("\t")[:3] == ["at", "operator", "action"]
    assert pyotp  # imported for its use in the dashboard tests


def test_commands_on_a_reader_are_in_the_audit_log(quick_sequence: str, outbox: list) -> None:
    ann = "ann@example.com"
    assert run("subscribers", "add", ann, "--sequence", "quick", "--confirmed").code == 0
    for args in (
        ["pause", ann],
        ["resume", ann],
        ["remove", ann, "--sequence", "quick"],
        ["booked", ann],
        ["unsubscribe", ann],
        ["forget", ann, "--yes"],
    ):
        ran = run("subscribers", *args)
        assert ran.code == 0, (args, ran.err)
    rows = run("audit", "--json").json()
    assert [r["action"] for r in rows] == [
        "reader forget",
        "reader unsubscribe",
        "reader booked",
        "reader take-out",
        "reader resume",
        "reader pause",
    ]
    assert {r["via"] for r in rows} == {"cli"}
    assert len({r["subscriber_id"] for r in rows}) == 1 and rows[0]["subscriber_id"]
    assert ann not in run("audit").out


def test_production_refuses_a_login_without_a_second_factor(
    db: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _token(run("operators", "add", "robin", "--email", "r@example.org").out.strip())
    with transaction() as s:  # set up in development, without the app
        assert auth.finish_setup(s, token, "correct horse battery", "").recovery_codes == []
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", "", "c") is not None
    from nurture.context import current

    rt = current()
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={"env": "production"}))
    with transaction() as s:
        assert auth.log_in(s, "robin", "correct horse battery", "", "c") is None
