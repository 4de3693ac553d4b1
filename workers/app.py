"""The Celery application, built from the same settings as everything else.

Tasks stay thin (see tasks.py): they take ids, call a service, and let the database be the
source of truth. Nothing is ever scheduled days ahead with eta/countdown: on Redis such
messages are redelivered every visibility timeout. Due times live in the database and beat
runs a short dispatch pass instead.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging

from nurture.config import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("nurture", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only after it ran, and requeued if its worker died: with the
        # lease in the database this makes a killed worker lose nothing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Redis only: longer than any batch takes; the database lease recovers lost work
        # sooner. (The SQLAlchemy transport hands its options to create_engine.)
        broker_transport_options=(
            {}
            if settings.is_embedded_broker
            else {"visibility_timeout": max(3600, settings.lease_seconds * 4)}
        ),
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "dispatch": {
                "task": "nurture.dispatch",
                "schedule": settings.dispatch_interval,
                "options": {"expires": settings.dispatch_interval * 4},
            },
            **_issue14_schedule(settings),
        },
    )
    if settings.inbox_url is not None:
        # Bounces, complaints and replies: one pass a minute (nurture/mail/inbox.py).
        app.conf.beat_schedule["inbox-check"] = {
            "task": "nurture.inbox_check",
            "schedule": 60.0,
            "options": {"expires": 120},
        }
    return app


def _issue14_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """Beat entries that exist only when their setting is on."""
    entries: dict[str, dict[str, object]] = {}
    if settings.events_url:
        entries["events"] = {
            "task": "nurture.events_sweep",
            "schedule": settings.dispatch_interval,
            "options": {"expires": settings.dispatch_interval * 4},
        }
    if settings.retention_days:
        # Daily at a fixed hour, so restarting beat never skips (or doubles) a day.
        entries["purge"] = {
            "task": "nurture.purge",
            "schedule": crontab(minute=17, hour=3),
            "options": {"expires": 3600},
        }
    return entries


@setup_logging.connect
def _logging(**_: object) -> None:
    # Our own format; Celery's default logs task arguments, which we keep free of PII anyway.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


app = make_celery(get_settings())
