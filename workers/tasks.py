"""Thin tasks: JSON-safe ids in, a service call, nothing else."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from nurture import upkeep
from nurture.celery_app import enqueue_batch, enqueue_confirmation
from nurture.context import current
from nurture.delivery import dispatch as dispatch_service
from nurture.delivery import sending
from nurture.events import webhooks as event_webhooks
from nurture.feedback.inbox import check_inbox
from nurture.mail.backends import TransientMailError
from nurture.subscribers import confirmation, retention, signup

log = logging.getLogger(__name__)


@shared_task(name="nurture.dispatch", ignore_result=True, acks_late=False)
def dispatch() -> dict[str, int]:
    # Beat may fire while the previous pass still runs; claims are atomic, so a second pass
    # only finds nothing left to claim.
    r = dispatch_service.dispatch_once(enqueue_batch)
    return {"claimed": r.claimed, "reclaimed": r.reclaimed, "batches": r.batches}


@shared_task(name="nurture.send_batch", ignore_result=True)
def send_batch(delivery_ids: list[int]) -> dict[str, Any]:
    r = sending.send_batch(delivery_ids)
    return {"sent": len(r.sent), "skipped": len(r.skipped), "failed": len(r.failed)}


@shared_task(
    name="nurture.send_confirmation",
    ignore_result=True,
    autoretry_for=(TransientMailError,),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=8,
)
def send_confirmation(consent_id: int) -> bool:
    # PermanentMailError is not retried: the address will never accept it.
    return confirmation.send_confirmation(consent_id)


@shared_task(name="nurture.inbox_check", ignore_result=True, acks_late=False)
def inbox_check() -> dict[str, int]:
    # Counts only: never an address. A second pass at once finds nothing new.
    return check_inbox().as_dict()


@shared_task(name="nurture.sign_up", bind=True, ignore_result=True, max_retries=None)
def sign_up(self: Task, slug: str, sealed_form: str) -> None:
    # The web view answered already (the same page, in the same time, for every address);
    # here the address is looked up and recorded, and its confirmation queued after commit.
    # The reader was told "check your inbox": a busy or unreachable database is waited out,
    # retrying until the signup is recorded. Two signups for one new address may race to
    # insert it: the second then finds the row. Any database error is re-raised by type
    # only: its message can quote the address.
    for attempt in (1, 2):
        try:
            signup.sign_up(slug, signup.open_form(sealed_form), enqueue_confirmation)
            return
        except IntegrityError:
            if attempt == 2:
                raise SignupFailed("IntegrityError") from None
        except OperationalError as exc:
            log.warning("signup for %s waits: %s", slug, type(exc.orig).__name__)
            raise self.retry(countdown=min(2**self.request.retries, 30)) from None
        except DBAPIError as exc:
            raise SignupFailed(type(exc.orig).__name__) from None


class SignupFailed(Exception):
    """A signup task's database error, without its message (which may quote an address)."""


# --- event webhooks and the retention limit (issue 14) ---------------------------------


@shared_task(name="nurture.events_sweep", ignore_result=True, acks_late=False)
def events_sweep() -> int:
    # Like dispatch: claims are atomic and leased, so overlapping sweeps do no harm.
    return event_webhooks.sweep(lambda ids: current().enqueue("nurture.deliver_events", ids))


@shared_task(name="nurture.deliver_events", ignore_result=True)
def deliver_events(outbox_ids: list[int]) -> dict[str, int]:
    # Retries live in the outbox (next_attempt_at), not in Celery: a refused event waits in
    # the database for the sweep, as a due send does.
    return event_webhooks.deliver(outbox_ids)


@shared_task(name="nurture.purge", ignore_result=True, acks_late=False)
def purge() -> dict[str, int]:
    r = retention.purge()
    return {"erased": r.erased, "unconfirmed": r.pending_erased}


@shared_task(name="nurture.tidy", ignore_result=True, acks_late=False)
def tidy() -> dict[str, int]:
    return upkeep.tidy()
