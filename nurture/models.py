"""All tables in one import, for Alembic and for code that needs the whole mapper registry."""

from nurture.admin.models import AuditEntry, LoginThrottle, Operator, OperatorSession
from nurture.articles.models import Article
from nurture.delivery.models import Delivery, DeliveryStatus, Link
from nurture.events.models import Event, EventKind, OutboxEvent, OutboxStatus
from nurture.feedback.models import FeedbackSeen
from nurture.keyring import Keyring
from nurture.sequences.models import Sequence, SequenceStatus, Step
from nurture.subscribers.models import (
    ENDED,
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from nurture.web.ratelimit import RateLimit

__all__ = [
    "ENDED",
    "Article",
    "AuditEntry",
    "Consent",
    "Delivery",
    "DeliveryStatus",
    "Enrollment",
    "EnrollmentStatus",
    "Event",
    "EventKind",
    "FeedbackSeen",
    "Keyring",
    "Link",
    "LoginThrottle",
    "Operator",
    "OperatorSession",
    "OutboxEvent",
    "OutboxStatus",
    "RateLimit",
    "Sequence",
    "SequenceStatus",
    "Step",
    "Subscriber",
    "SubscriberStatus",
    "Suppression",
]
