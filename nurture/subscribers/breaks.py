"""How "take a break for two weeks" works: the one file to read.

Someone in a hard week may want quiet without leaving. Beside unsubscribe, every email's
footer (content/render.py) links to /break/<token>, built by delivery/compose.py `break_url`;
the token names the person by their public id (tokens.py), like the unsubscribe token.

Pressing it: GET and HEAD only show a page with one button (mail scanners fetch every link);
POST takes the break (web/views.py, thin). Taking it holds each of the person's running
sequences where it is, the same pause an operator or a reply makes (subscribers/holding.py),
with `paused_until` set two weeks ahead, and records one `took_break` event: on the person's
timeline, in `stats` (for the last email they got), and announced as `subscriber.paused`
(events/outbox.py). A second press while on a break changes nothing.

Ending it: the upkeep pass (upkeep.py, every minute) resumes each break that is over; the
step that fell due meanwhile goes in the reader's next send window, never at once. A pause
that waits for a person (an operator's, a reply's) has no `paused_until`, and one made during
a break takes the end date away: the person who paused it resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture import tokens
from nurture.clock import now
from nurture.db import reading, transaction
from nurture.events.models import EventKind
from nurture.events.recording import record_event
from nurture.sequences.schedule import reader_zone
from nurture.subscribers.holding import pause_enrollment, resume_enrollment
from nurture.subscribers.models import Enrollment, EnrollmentStatus, Subscriber
from nurture.subscribers.unsubscribe import subscriber_for

BREAK_LENGTH = timedelta(days=14)


@dataclass(frozen=True)
class Break:
    """A person's break as their page shows it."""

    until: datetime | None  # when their break ends; None when they are on none
    running: bool  # they have a sequence running that a break would hold
    ends: date | None  # the day it ends (or would, taken now), in the reader's zone


def on_break_until(sub: Subscriber) -> datetime | None:
    ends = [e.paused_until for e in sub.enrollments if e.status == EnrollmentStatus.PAUSED]
    return max((at for at in ends if at is not None), default=None)


def _state(sub: Subscriber | None) -> Break:
    if sub is None:  # forgotten, or a test email's link: nothing to hold
        return Break(until=None, running=False, ends=None)
    until = on_break_until(sub)
    running = any(e.status == EnrollmentStatus.ACTIVE for e in sub.enrollments)
    fallback = sub.enrollments[0].sequence.config.timezone if sub.enrollments else "UTC"
    day = (until or now() + BREAK_LENGTH).astimezone(reader_zone(sub.timezone, fallback)).date()
    return Break(until=until, running=running, ends=day if until or running else None)


def take_break(s: Session, sub: Subscriber) -> datetime | None:
    """Hold the person's running sequences for BREAK_LENGTH. Returns when the break ends, or
    None when nothing was running to hold. Taking it again while on it changes nothing."""
    until = on_break_until(sub)
    if until is not None:
        return until
    running = [e for e in sub.enrollments if e.status == EnrollmentStatus.ACTIVE]
    if not running:
        return None
    until = now() + BREAK_LENGTH
    for e in running:
        pause_enrollment(s, e, by="break")
        e.paused_until = until
    record_event(s, EventKind.TOOK_BREAK, sub, data={"until": until.isoformat()})
    return until


def break_state(token: str) -> Break:
    """What the page shows before the button is pressed. Raises tokens.BadToken."""
    claims = tokens.read(tokens.BREAK, token)
    with reading() as s:
        return _state(subscriber_for(s, claims))


def break_by_token(token: str) -> Break:
    """Take the break for whoever the token names. Raises tokens.BadToken."""
    claims = tokens.read(tokens.BREAK, token)
    with transaction() as s:
        sub = subscriber_for(s, claims)
        if sub is not None:
            take_break(s, sub)
        return _state(sub)


def end_breaks(s: Session) -> int:
    """Resume every break that is over (upkeep, every minute); returns how many sequences."""
    over = s.scalars(
        select(Enrollment).where(
            Enrollment.status == EnrollmentStatus.PAUSED,
            Enrollment.paused_until.is_not(None),
            Enrollment.paused_until <= now(),
        )
    )
    return sum(resume_enrollment(s, e, by="break over") for e in list(over))
