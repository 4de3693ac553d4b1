"""POST /webhooks/mail/<provider>: bounces and complaints reported by the mail provider.

Each provider is verified as it documents, on the raw request, before anything is acted on:

- Postmark: HTTP basic auth; the password is NURTURE_MAIL_WEBHOOK_SECRET.
- Mailgun: `signature.signature` is HMAC-SHA256(key, timestamp + token) in hex. A timestamp
  further than TOLERANCE from our clock is stale, and a token already used is a replay:
  both are refused, so a captured request cannot be sent again.
- Amazon SES through SNS, as warehouse's MessageVerifier does it: the message's TopicArn
  must be NURTURE_SES_TOPIC_ARN (checked first, so another topic's message makes us fetch
  nothing), the SNS signature (SignatureVersion 1: SHA1, 2: SHA256, RSA PKCS#1 v1.5) is
  checked with the certificate at SigningCertURL, which must be an https URL on
  sns.<region>.amazonaws.com, and a message older than SNS_TOLERANCE, or whose MessageId
  was already handled, is refused. Amazon's signature alone proves nothing about whose
  topic it is: anyone can create a topic in their own AWS account, subscribe our URL to it
  and publish a Complaint naming someone on the list, signed by Amazon. A
  SubscriptionConfirmation is verified the same way and confirmed by visiting its
  SubscribeURL only when that link is on an SNS host and for our topic.

Anything unverified is one answer, 401. Anything verified gets one answer too, whoever it
names: {"result": "accepted"} (a repeat Postmark or Mailgun call: "duplicate"), so the
webhook cannot be used to learn who is on the list. Logs name the provider and why a call
was refused, never an address.

An authenticated provider may name the person by address; a delivery is still found by our
Message-ID first when the payload carries it. What happens then is handling.apply's, the
same as for the inbox.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nurture.clock import now
from nurture.db import transaction
from nurture.feedback.classify import ENHANCED, Kind, Notice, hard_or_soft
from nurture.feedback.handling import apply, digest, first_time

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
SNS_TOLERANCE = timedelta(hours=1)
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
Fetch = Callable[[str], bytes]


class Refused(Exception):
    """Not verified: 401, nothing done."""


class BadPayload(Exception):
    """Verified, but not a payload we understand: 400."""


@dataclass
class Reported:
    key: str  # the provider's id of this notification: handled once
    notices: list[tuple[Notice, str | None]] = field(default_factory=list)


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadPayload("body is not a JSON object")
    return data


def _message_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        return ()
    return (f"<{value.strip().strip('<>')}>",)


def _email(value: Any) -> str | None:
    return value if isinstance(value, str) and "@" in value else None


# --- Postmark -------------------------------------------------------------------------

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "DMARCPolicy"}


def verify_postmark(secret: str, authorization: str | None) -> None:
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Refused("bad basic auth") from None
    password = decoded.partition(":")[2]
    if scheme.lower() != "basic" or not hmac.compare_digest(password, secret):
        raise Refused("wrong basic auth password")


def parse_postmark(data: dict[str, Any]) -> Reported:
    record, kind_name = data.get("RecordType"), data.get("Type")
    reported = Reported(f"{record}:{data.get('ID')}")
    email = _email(data.get("Email"))
    if record == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = Kind.COMPLAINT
    elif record == "Bounce" and kind_name in POSTMARK_HARD:
        kind = Kind.HARD_BOUNCE
    elif record == "Bounce" and kind_name in POSTMARK_SOFT:
        kind = Kind.SOFT_BOUNCE
    else:
        return reported  # deliveries, opens, auto-responders...: nothing to do
    found = ENHANCED.search(str(data.get("Details", "")))
    status = ".".join(found.groups()) if found else ""
    reported.notices.append((Notice(kind, status), email))
    return reported


# --- Mailgun --------------------------------------------------------------------------


def verify_mailgun(secret: str, data: dict[str, Any], at: datetime) -> str:
    """Checks the signature and its age; returns the token (the caller refuses a reuse)."""
    sig = data.get("signature")
    if not isinstance(sig, dict):
        raise Refused("no signature")
    ts, token, given = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not ts.isdigit() or not token or not given:
        raise Refused("incomplete signature")
    if abs(at.timestamp() - int(ts)) > TOLERANCE_SECONDS:
        raise Refused("stale timestamp")
    expected = hmac.new(secret.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Refused("wrong signature")
    return token


def parse_mailgun(data: dict[str, Any]) -> Reported:
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise BadPayload("no event-data object")
    reported = Reported(f"event:{event.get('id')}")
    headers = (event.get("message") or {}).get("headers") or {}
    ids = _message_ids(headers.get("message-id"))
    email = _email(event.get("recipient"))
    name = event.get("event")
    if name == "complained":
        reported.notices.append((Notice(Kind.COMPLAINT, message_ids=ids), email))
    elif name == "failed" and event.get("severity") == "permanent":
        status_info = event.get("delivery-status") or {}
        text = f"{status_info.get('message', '')} {status_info.get('description', '')}"
        found = ENHANCED.search(str(status_info.get("enhanced-code") or text))
        status = ".".join(found.groups()) if found else ""
        if event.get("reason") == "suppress-bounce":
            kind = Kind.HARD_BOUNCE  # Mailgun already knows the address is dead
        else:
            kind = hard_or_soft(status, text)
        reported.notices.append((Notice(kind, status, ids), email))
    # "failed" with severity temporary: Mailgun is still retrying; not a failure yet.
    return reported


# --- Amazon SES through SNS -------------------------------------------------------------

SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip


def sns_string_to_sign(data: dict[str, Any]) -> bytes:
    fields = SNS_FIELDS.get(str(data.get("Type")))
    if fields is None:
        raise Refused("unknown SNS message type")
    lines = []
    for name in fields:
        if name == "Subject" and data.get(name) is None:
            continue  # the one optional field: left out when absent
        lines += [name, str(data.get(name, ""))]
    return ("\n".join(lines) + "\n").encode()


def is_sns_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(SNS_HOST.match((parts.hostname or "").lower()))


def verify_sns(data: dict[str, Any], fetch: Fetch, at: datetime, topic: str) -> None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if data.get("TopicArn") != topic:
        raise Refused("TopicArn is not NURTURE_SES_TOPIC_ARN")
    cert_url = data.get("SigningCertURL")
    if not is_sns_url(cert_url) or not str(urlsplit(str(cert_url)).path).endswith(".pem"):
        raise Refused("signing certificate not on an SNS host")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(data.get("SignatureVersion")))
    if algorithm is None:
        raise Refused("unknown SNS signature version")
    try:
        signature = base64.b64decode(str(data.get("Signature", "")), validate=True)
        stamp = datetime.fromisoformat(str(data.get("Timestamp", "")).replace("Z", "+00:00"))
    except (binascii.Error, ValueError):
        raise Refused("malformed signature or timestamp") from None
    if stamp.tzinfo is None or abs(at - stamp) > SNS_TOLERANCE:
        raise Refused("stale SNS message")
    try:
        key = x509.load_pem_x509_certificate(fetch(str(cert_url))).public_key()
    except Exception as exc:
        raise Refused(f"signing certificate unusable: {type(exc).__name__}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("signing certificate is not RSA")
    try:
        key.verify(signature, sns_string_to_sign(data), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Refused("wrong SNS signature") from None


def confirm_subscription(data: dict[str, Any], fetch: Fetch, topic: str) -> None:
    """Visit the SubscribeURL of a verified SubscriptionConfirmation of our topic. The link
    is signed with the rest, but it is what we fetch: it must be SNS's, for our topic."""
    url = data.get("SubscribeURL")
    if not is_sns_url(url) or parse_qs(urlsplit(str(url)).query).get("TopicArn") != [topic]:
        raise Refused("subscription link not on an SNS host or not for our topic")
    fetch(str(url))


def _ses_message_ids(mail: dict[str, Any]) -> tuple[str, ...]:
    common = mail.get("commonHeaders") or {}
    ids = _message_ids(common.get("messageId"))
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            ids += _message_ids(header.get("value"))
    return tuple(dict.fromkeys(ids))


def parse_ses(data: dict[str, Any]) -> Reported:
    reported = Reported(f"sns:{data.get('MessageId')}")
    try:
        message = json.loads(str(data.get("Message", "")))
    except ValueError:
        raise BadPayload("SNS Message is not JSON") from None
    if not isinstance(message, dict):
        raise BadPayload("SNS Message is not a JSON object")
    kind = message.get("notificationType") or message.get("eventType")
    ids = _ses_message_ids(message.get("mail") or {})
    if kind == "Bounce":
        bounce = message.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        for r in bounce.get("bouncedRecipients") or []:
            status = str(r.get("status") or "")
            text = str(r.get("diagnosticCode") or "")
            found = hard_or_soft(status, text) if permanent else Kind.SOFT_BOUNCE
            if permanent and bounce.get("bounceSubType") in {"Suppressed", "NoEmail"}:
                found = Kind.HARD_BOUNCE
            reported.notices.append((Notice(found, status, ids), _email(r.get("emailAddress"))))
    elif kind == "Complaint":
        complaint = message.get("complaint") or {}
        if complaint.get("complaintFeedbackType") != "not-spam":
            for r in complaint.get("complainedRecipients") or []:
                email = _email(r.get("emailAddress"))
                reported.notices.append((Notice(Kind.COMPLAINT, message_ids=ids), email))
    return reported


def fetch_https(url: str) -> bytes:
    """The one thing that leaves the machine: SNS certificates and subscription links."""
    from urllib.request import urlopen

    with urlopen(url, timeout=10) as resp:
        data: bytes = resp.read(100_000)
        return data


# --- one request ------------------------------------------------------------------------


def _apply(provider: str, reported: Reported, token: str | None = None) -> str:
    with transaction() as s:
        if token is not None and not first_time(s, f"{provider}-token", digest(token.encode())):
            raise Refused("token already used")
        if not first_time(s, provider, digest(reported.key.encode())):
            if provider == "ses":
                raise Refused("SNS message already handled")
            return "duplicate"
        for notice, email in reported.notices:
            # Whether it named anyone we know is not told: the answer is the same for all.
            apply(s, notice, provider, email=email)
    return "accepted"


def _needs(value: str | None, name: str) -> str:
    if not value:  # the view answers 404 first; this only keeps an unset key from matching
        raise Refused(f"{name} is not set")
    return value


def _ses(data: dict[str, Any], topic: str, fetch: Fetch, at: datetime) -> tuple[int, str]:
    verify_sns(data, fetch, at, topic)
    if data.get("Type") == "SubscriptionConfirmation":
        confirm_subscription(data, fetch, topic)
        return 200, "subscribed"
    if data.get("Type") != "Notification":
        return 200, "accepted"  # UnsubscribeConfirmation: nothing to do
    return 200, _apply("ses", parse_ses(data))


def handle_feedback_webhook(
    provider: str,
    body: bytes,
    *,
    secret: str | None,
    topic: str | None,
    authorization: str | None,
    fetch: Fetch,
) -> tuple[int, str]:
    """Verify and act on one webhook call: (HTTP status, result word). `secret` is
    NURTURE_MAIL_WEBHOOK_SECRET, `topic` NURTURE_SES_TOPIC_ARN."""
    at = now()
    try:
        if provider == "postmark":
            verify_postmark(_needs(secret, "NURTURE_MAIL_WEBHOOK_SECRET"), authorization)
            return 200, _apply(provider, parse_postmark(_json(body)))
        try:
            data = _json(body)
        except BadPayload:
            raise Refused("no signed JSON body") from None
        if provider == "mailgun":
            token = verify_mailgun(_needs(secret, "NURTURE_MAIL_WEBHOOK_SECRET"), data, at)
            return 200, _apply(provider, parse_mailgun(data), token)
        return _ses(data, _needs(topic, "NURTURE_SES_TOPIC_ARN"), fetch, at)
    except Refused as exc:
        log.warning("mail webhook from %s refused: %s", provider, exc)
        return 401, "unverified"
    except BadPayload as exc:
        log.warning("mail webhook from %s not understood: %s", provider, exc)
        return 400, "bad request"
