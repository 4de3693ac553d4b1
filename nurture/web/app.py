"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from sqlalchemy import text

from nurture.config import get_settings
from nurture.db import get_engine


def create_app(**overrides: Any) -> Flask:
    settings = get_settings()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret, **overrides)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(health())

    return app


def health() -> dict[str, Any]:
    status: dict[str, Any] = {"database": "ok", "broker": "ok"}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # report, never crash the health check
        status["database"] = f"error: {type(exc).__name__}"
    try:
        from workers.app import app as celery

        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        status["broker"] = f"error: {type(exc).__name__}"
    status["ok"] = status["database"] == "ok" and status["broker"] == "ok"
    return status
