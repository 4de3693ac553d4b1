"""What is deleted once it has served, every minute (beat runs `tidy`): the embedded broker's
delivered messages (nurture/celery_app.py) and signup rate-limit counters whose window has
ended (nurture/web/ratelimit.py). Neither is needed again, and both name clients or carry
task arguments."""

from __future__ import annotations

from nurture.celery_app import delete_delivered_messages
from nurture.context import current
from nurture.web.ratelimit import purge_expired


def tidy() -> dict[str, int]:
    return {
        "broker_messages": delete_delivered_messages(current().settings.broker_url),
        "rate_limits": purge_expired(),
    }
