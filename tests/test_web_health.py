"""GET /healthz: 200 with database and broker status; 503 when one of them is down."""

from __future__ import annotations

import pytest

from nurture.context import current
from nurture.web.app import create_app
from tests.conftest import reload_runtime


def test_healthy(db: str) -> None:
    answer = create_app(current()).test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"database": "ok", "broker": "ok", "ok": True}


def test_broker_down_is_503_and_says_which(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_BROKER_URL", "redis://127.0.0.1:9/0")
    reload_runtime()
    answer = create_app(current()).test_client().get("/healthz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["database"] == "ok" and body["broker"].startswith("error") and not body["ok"]
