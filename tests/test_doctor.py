"""`nurture doctor`: the relay (real SMTP servers with and without STARTTLS, certificates
from a CA of the test's own), the base URL and its one-click endpoint (the real web app),
the keys, and the command itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.wrappers import Request, Response

from nurture.config import DEV_DATA_KEY, Settings, load_settings
from nurture.doctor.keys import Key, check_key, check_keys
from nurture.doctor.relay import Relay, check_relay, relay_of
from nurture.doctor.report import Status
from nurture.doctor.web import check_base_url, check_one_click
from nurture.events.models import Event
from nurture.runtime import Runtime, create_runtime
from nurture.web.app import create_app
from tests.doctor_support import TestCA, silent_server, web_server
from tests.support import SMTPServer, free_port
from tests.web_support import count

STRONG = "b7f0c2e19a4d8e6f3a5b1c7d9e2f4a6b"
DATA_KEY = "kdBWw5f1y2G9oXn3tqD1F0CwV9tYh6Jc3mXzq8Rr4uE="


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def relay(server: SMTPServer, *, implicit: bool = False, starttls: bool = True) -> Relay:
    return Relay("127.0.0.1", server.port, implicit_tls=implicit, starttls=starttls)


# The relay


def test_relay_with_starttls_and_a_trusted_certificate_is_ok(ca: TestCA) -> None:
    tls = ca.issue("127.0.0.1").server_context()
    with SMTPServer(tls_context=tls) as server:
        found = check_relay(relay(server), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.OK, found
    assert "STARTTLS with a valid certificate for 127.0.0.1" in found.message
    assert server.messages == []  # nothing was sent


def test_relay_without_starttls_fails() -> None:
    with SMTPServer() as server:
        found = check_relay(relay(server), cafile=None, timeout=5)
    assert found.status == Status.FAIL and "offers no STARTTLS" in found.message


def test_starttls_offered_but_not_asked_for_fails(ca: TestCA) -> None:
    with SMTPServer(tls_context=ca.issue("127.0.0.1").server_context()) as server:
        found = check_relay(relay(server, starttls=False), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.FAIL and "add ?starttls=true" in found.message


def test_a_self_signed_relay_certificate_fails(ca: TestCA) -> None:
    tls = ca.issue("127.0.0.1", self_signed=True).server_context()
    with SMTPServer(tls_context=tls) as server:
        found = check_relay(relay(server), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.FAIL and "is self-signed" in found.message


def test_a_certificate_from_an_unknown_authority_fails(ca: TestCA, tmp_path: Path) -> None:
    stranger = TestCA(tmp_path)  # what this client trusts is another CA
    with SMTPServer(tls_context=ca.issue("127.0.0.1").server_context()) as server:
        found = check_relay(relay(server), cafile=str(stranger.cafile), timeout=5)
    assert found.status == Status.FAIL
    assert "not signed by an authority this machine trusts" in found.message


def test_a_certificate_for_another_name_fails(ca: TestCA) -> None:
    tls = ca.issue("relay.example.net").server_context()
    with SMTPServer(tls_context=tls) as server:
        found = check_relay(relay(server), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.FAIL and "is for another address" in found.message


def test_an_ending_certificate_is_a_warning(ca: TestCA) -> None:
    tls = ca.issue("127.0.0.1", days=5).server_context()
    with SMTPServer(tls_context=tls) as server:
        found = check_relay(relay(server), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.WARN and "ends in" in found.message


def test_smtps_relay_is_checked_too(ca: TestCA) -> None:
    with SMTPServer(ssl_context=ca.issue("127.0.0.1").server_context()) as server:
        found = check_relay(relay(server, implicit=True), cafile=str(ca.cafile), timeout=5)
    assert found.status == Status.OK and "TLS (smtps)" in found.message


def test_a_dead_or_missing_relay_fails_within_the_timeout() -> None:
    with silent_server() as port:
        started = time.monotonic()
        dead = check_relay(Relay("127.0.0.1", port, False, True), cafile=None, timeout=0.5)
        assert time.monotonic() - started < 3
    assert dead.status == Status.FAIL and "did not answer within 0.5 s" in dead.message
    missing = check_relay(Relay("127.0.0.1", free_port(), False, True), cafile=None, timeout=2)
    assert missing.status == Status.FAIL and "refused" in missing.message


def test_the_relay_is_named_without_its_password() -> None:
    found = relay_of("smtp://user:s3cret-pass@127.0.0.1:1?starttls=true")
    assert found is not None and "s3cret" not in repr(found)
    assert relay_of("memory://") is None and relay_of("file://./outbox") is None


# The base URL and its one-click endpoint


def settings(**values: Any) -> Settings:
    return load_settings(**{"secret_key": STRONG, "data_key": DATA_KEY, **values})


@pytest.mark.parametrize(
    ("env", "url", "status"),
    [
        ("development", "https://example.org", Status.OK),
        ("production", "https://example.org", Status.OK),
        ("development", "http://example.org", Status.WARN),
        ("production", "http://example.org", Status.FAIL),
        ("production", "https://localhost:8000", Status.FAIL),
    ],
)
def test_base_url_is_https(env: str, url: str, status: Status) -> None:
    assert check_base_url(settings(env=env, base_url=url)).status == status


def test_one_click_against_the_real_web_app(app: Flask, runtime: Runtime) -> None:
    events = count(Event)
    with web_server(app) as base:
        found = check_one_click(settings(base_url=base), cafile=None, timeout=5)
    assert found.status == Status.OK, found
    assert count(Event) == events  # the token names no one: nobody was unsubscribed


def test_one_click_over_https(app: Flask, ca: TestCA) -> None:
    with web_server(app, tls=ca.issue("127.0.0.1")) as base:
        trusted = check_one_click(settings(base_url=base), cafile=str(ca.cafile), timeout=5)
        untrusted = check_one_click(settings(base_url=base), cafile=None, timeout=5)
    assert trusted.status == Status.OK, trusted
    assert untrusted.status == Status.FAIL and "certificate" in untrusted.message


def test_one_click_against_a_web_service_with_another_key(app: Flask, runtime: Runtime) -> None:
    other = create_runtime(load_settings(secret_key="another-" + STRONG))
    try:
        with web_server(create_app(other, TESTING=True)) as base:
            found = check_one_click(settings(base_url=base), cafile=None, timeout=5)
    finally:
        other.close()
    assert found.status == Status.FAIL and "runs with another key" in found.message


def _answering(status: int, body: str = "", **headers: str) -> Any:
    @Request.application  # type: ignore[misc]
    def wsgi(request: Request) -> Response:
        return Response(body, status=status, headers=headers)

    return wsgi


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "says"),
    [
        (301, "", {"Location": "https://www.example.org/"}, Status.FAIL, "redirect (301"),
        (404, "", {}, Status.FAIL, "404 (not found)"),
        (405, "", {}, Status.FAIL, "405 (POST not allowed)"),
        (502, "", {}, Status.FAIL, "failed (HTTP 502)"),
        (200, "<h1>Welcome to our site</h1>", {}, Status.WARN, "not with nurture's"),
    ],
)
def test_one_click_answered_by_something_else(
    runtime: Runtime, status: int, body: str, headers: dict, expected: Status, says: str
) -> None:
    with web_server(_answering(status, body, **headers)) as base:
        found = check_one_click(settings(base_url=base), cafile=None, timeout=5)
    assert found.status == expected and says in found.message, found


def test_one_click_with_nothing_answering_fails_within_the_timeout(runtime: Runtime) -> None:
    gone = check_one_click(
        settings(base_url=f"http://127.0.0.1:{free_port()}"), cafile=None, timeout=2
    )
    assert gone.status == Status.FAIL and "refused" in gone.message
    with silent_server() as port:
        started = time.monotonic()
        base = f"http://127.0.0.1:{port}"
        hung = check_one_click(settings(base_url=base), cafile=None, timeout=0.5)
    assert hung.status == Status.FAIL and "no answer within 0.5 s" in hung.message
    assert time.monotonic() - started < 3


# The keys


def test_strong_keys_are_ok() -> None:
    found = check_keys(settings())
    assert [(f.status, f.subject) for f in found] == [
        (Status.OK, "NURTURE_SECRET_KEY"),
        (Status.OK, "NURTURE_DATA_KEY"),
    ]


@pytest.mark.parametrize("env", ["development", "production"])
def test_a_missing_or_weak_key_warns_in_development_and_fails_in_production(env: str) -> None:
    # Production refuses to load such settings at all; built without checks, the check says it.
    expected = Status.FAIL if env == "production" else Status.WARN
    unset = Settings.model_construct(env=env, secret_key=None, data_key=None)
    secret, data = check_keys(unset)
    assert (secret.status, secret.subject) == (expected, "NURTURE_SECRET_KEY")
    assert "openssl rand -hex 32" in secret.message
    assert (data.status, data.subject) == (expected, "NURTURE_DATA_KEY")
    assert "nurture keys new" in data.message
    weak = Settings.model_construct(
        env=env,
        secret_key=load_settings(secret_key="a" * 40).secret_key,
        data_key=load_settings(data_key=DEV_DATA_KEY).data_key,
    )
    secret, data = check_keys(weak)
    assert secret.status == expected and "too predictable" in secret.message
    assert "a" * 40 not in secret.message  # never the key itself
    assert data.status == expected and "published" in data.message
    assert DEV_DATA_KEY not in data.message


def test_another_key_would_be_one_more_row() -> None:
    data_key = Key("NURTURE_DATA_KEY", lambda s: s.secret_key, lambda v: "too short", "x")
    found = check_key(settings(), data_key)
    assert (found.status, found.subject) == (Status.WARN, "NURTURE_DATA_KEY")
