"""May we still mail this person? The one rule, used by dispatch (which claims), sending
(which re-checks under lock), reports (schedule, retries) and signup (the confirmation).

A person receives sequence mail only while their address is confirmed, their enrollment in
that sequence is active and the step still exists. Someone who left (unsubscribed, bounced,
complained) or was forgotten receives nothing at all, and no operator can put them back:
only they can, through the signup form and its confirmation.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement

from nurture.subscribers.models import Enrollment, EnrollmentStatus, SubscriberStatus

# Statuses of people who told us to stop, directly or through their mail system.
LEFT: frozenset[str] = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)
FORGOTTEN = "forgotten"


def left_reason(subscriber_status: str) -> str | None:
    """'unsubscribed', 'bounced' or 'complained' for someone who left; None otherwise."""
    return str(subscriber_status) if subscriber_status in LEFT else None


def why_not_mail(
    subscriber_status: str,
    enrollment_status: str | None = None,
    *,
    step_removed: bool = False,
) -> str | None:
    """Why this sequence email may not go out now, or None when it may.

    `enrollment_status` None asks about the person alone (a retry, a report row)."""
    if subscriber_status != SubscriberStatus.CONFIRMED:
        return f"subscriber {subscriber_status}"
    if enrollment_status is not None and enrollment_status != EnrollmentStatus.ACTIVE:
        return f"enrollment {enrollment_status}"
    if step_removed:
        return "step removed"
    return None


def claimable() -> ColumnElement[bool]:
    """The claim's part of the rule, over Enrollment alone: an active enrollment is always a
    confirmed person's. An enrollment starts only once its person is confirmed, and every
    way of leaving ends all of that person's enrollments in the same transaction
    (leaving.end_enrollments). Leaving the person's row out of the claim spares a lookup per
    claimed row; sending re-checks the person under lock (why_not_mail), so an enrollment
    that broke this rule would still send nothing."""
    return Enrollment.status == EnrollmentStatus.ACTIVE


def may_ask_to_confirm(subscriber_status: str, *, suppressed: bool) -> bool:
    """The confirmation email is the one email an unconfirmed address may get, and only while
    the person has not left since they signed up and was never forgotten."""
    return not suppressed and left_reason(subscriber_status) is None
