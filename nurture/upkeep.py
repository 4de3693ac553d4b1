"""Upkeep, every minute (beat runs `tidy`): breaks that are over end, so those readers go on
in their next send window (nurture/subscribers/breaks.py); and what has served is deleted:
the embedded broker's delivered messages (nurture/celery_app.py) and signup rate-limit
counters whose window has ended (nurture/web/ratelimit.py). Neither is needed again, and
both name clients or carry task arguments."""

from __future__ import annotations

from nurture.celery_app import delete_delivered_messages
from nurture.context import current
from nurture.db import transaction
from nurture.subscribers.breaks import end_breaks
from nurture.web.ratelimit import purge_expired


def resume_breaks() -> int:
    with transaction() as s:
        return end_breaks(s)


def tidy() -> dict[str, int]:
    return {
        "breaks_ended": resume_breaks(),
        "broker_messages": delete_delivered_messages(current().settings.broker_url),
        "rate_limits": purge_expired(),
    }
