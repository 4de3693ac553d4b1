"""The Celery application of a runtime, built from the same settings as everything else.

Tasks stay thin (see tasks.py): they take ids, call a service, and let the database be the
source of truth. Nothing is ever scheduled days ahead with eta/countdown: on Redis such
messages are redelivered every visibility timeout. Due times live in the database and beat
runs a short dispatch pass instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import beat_embedded_init, setup_logging
from sqlalchemy import create_engine, inspect, text

from nurture.config import Settings
from nurture.context import current, use
from nurture.process_tree import die_with_parent

if TYPE_CHECKING:
    from nurture.runtime import Runtime


def make_celery(runtime: Runtime) -> Celery:
    """The runtime's Celery app (Flask's celery_init_app is the model): every task runs with
    this runtime current, so the services it calls use its database, clock and mail."""

    class RuntimeTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with use(runtime):
                return self.run(*args, **kwargs)

    settings = runtime.settings
    # The tasks live with the workers (workers/tasks.py); named, not imported, so that this
    # package never depends on them. A worker loads them through `include`.
    app = Celery(
        "nurture", broker=settings.broker_url, include=["workers.tasks"], task_cls=RuntimeTask
    )
    app.conf.update(_config(settings))
    return app


def _config(settings: Settings) -> dict[str, Any]:
    return dict(
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
            # Upkeep: breaks that are over end; what has served goes (broker messages, expired
            # rate-limit counters).
            "tidy": {"task": "nurture.tidy", "schedule": 60.0, "options": {"expires": 120}},
            # Daily at a fixed hour, so restarting beat never skips (or doubles) a day: the
            # retention limit (when set) and unconfirmed signups (always).
            "purge": {
                "task": "nurture.purge",
                "schedule": crontab(minute=17, hour=3),
                "options": {"expires": 3600},
            },
            **_optional_schedule(settings),
        },
    )


def _optional_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """Beat entries that exist only when their setting is on."""
    entries: dict[str, dict[str, object]] = {}
    if settings.events_url:
        entries["events"] = {
            "task": "nurture.events_sweep",
            "schedule": settings.dispatch_interval,
            "options": {"expires": settings.dispatch_interval * 4},
        }
    if settings.inbox_url is not None:
        # Bounces, complaints and replies: one pass a minute (nurture/feedback/inbox.py).
        entries["inbox-check"] = {
            "task": "nurture.inbox_check",
            "schedule": 60.0,
            "options": {"expires": 120},
        }
    return entries


# How work reaches the workers: by task name (the tasks are in workers/tasks.py).


def enqueue_batch(delivery_ids: list[int]) -> None:
    current().enqueue("nurture.send_batch", delivery_ids)


def enqueue_confirmation(consent_id: int) -> None:
    current().enqueue("nurture.send_confirmation", consent_id)


def enqueue_signup(slug: str, sealed_form: str) -> None:
    # Sealed (subscribers/signup.py seal_form): the broker never holds an address or a name.
    current().enqueue("nurture.sign_up", slug, sealed_form)


def delete_delivered_messages(broker_url: str) -> int:
    """The embedded broker (Celery's SQLAlchemy transport) keeps every message it delivered,
    marked invisible, forever: a row per dispatch every few seconds, and each task's
    arguments. Those rows have served; they go (zeroed in the file, secure_delete), every
    minute from beat and after every erasure. Redis deletes delivered messages itself."""
    if not broker_url.startswith("sqla+"):
        return 0
    engine = create_engine(broker_url.removeprefix("sqla+"))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            if not inspect(conn).has_table("kombu_message"):
                return 0  # nothing was ever sent through it
            deleted = conn.execute(
                text("DELETE FROM kombu_message WHERE visible = :no"), {"no": False}
            )
            return int(deleted.rowcount)
    finally:
        engine.dispose()


# Beat starts these every few seconds; three lines a pass ("Sending due task", "received",
# "succeeded") buried everything worth reading. They are logged at debug level instead; what
# a pass hands on (send_batch) and what goes wrong still log at info and above.
ROUTINE_TASKS = frozenset(
    {"nurture.dispatch", "nurture.tidy", "nurture.events_sweep", "nurture.inbox_check"}
)
ROUTINE_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class RoutineAtDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _names_routine_task(record.args):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _names_routine_task(args: object) -> bool:
    if isinstance(args, dict):  # celery.app.trace and the worker: a context dict
        return args.get("name") in ROUTINE_TASKS
    return isinstance(args, tuple) and any(a in ROUTINE_TASKS for a in args if isinstance(a, str))


@setup_logging.connect
def _logging(**_: object) -> None:
    # Our own format; Celery's default logs task arguments, which we keep free of PII anyway.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ROUTINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RoutineAtDebug) for f in logger.filters):
            logger.addFilter(RoutineAtDebug())


@beat_embedded_init.connect
def _beat_ends_with_its_worker(**_: object) -> None:
    # `worker --beat` (what `nurture run` starts) forks beat as a process of its own. Celery
    # has its pool processes killed with the worker, not this one: a worker that died by
    # SIGKILL or the OOM killer would leave beat asking for dispatch passes, unseen.
    die_with_parent()
