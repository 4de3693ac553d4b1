"""POST /webhooks/mail/<provider>: Postmark, Mailgun and Amazon SES (through SNS) report
bounces and complaints in their documented shapes; forged, stale and replayed calls get 401.

For SNS the tests make their own key and certificate and stand in for the one external
thing, fetching the certificate from SigningCertURL: the signatures are real RSA
signatures, checked with `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery
from nurture.delivery.sending import send_batch
from nurture.events.models import Event
from nurture.feedback.webhooks import sns_string_to_sign
from nurture.sequences.services import get_sequence
from nurture.subscribers.addresses import find_subscriber
from nurture.subscribers.enrolling import add_subscriber
from tests.conftest import FIXTURES, reload_runtime

SECRET = "mail-webhook-secret-0123456789"
HOOKS = FIXTURES / "webhooks"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
# A topic in a stranger's AWS account: Amazon signs its messages exactly as it signs ours.
THEIR_TOPIC = "arn:aws:sns:us-east-1:999999999999:ses-feedback"


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Fetcher:
    """Stands in for HTTPS: serves our certificate at CERT_URL and records every URL."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem if url.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"


@pytest.fixture
def fetcher(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> Fetcher:
    return Fetcher(sns_key[1])


@pytest.fixture
def hooked(
    monkeypatch: pytest.MonkeyPatch,
    quick_sequence: str,
    clock: FrozenClock,
    eager_celery: None,
    fetcher: Fetcher,
) -> FlaskClient:
    monkeypatch.setenv("NURTURE_MAIL_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("NURTURE_SES_TOPIC_ARN", TOPIC)
    reload_runtime()
    from nurture.web.app import create_app

    clock.set(datetime(2026, 3, 6, 9, 30, tzinfo=UTC))  # inside the quick window
    current().clock = clock  # reset_settings forgot it
    return create_app(current(), TESTING=True, SNS_FETCH=fetcher).test_client()


@pytest.fixture
def sent(hooked: FlaskClient) -> Delivery:
    """ann@example.com, confirmed and sent step one: the delivery."""
    with transaction() as s:
        add_subscriber(s, "ann@example.com", get_sequence(s, "quick"), confirmed=True)
    ids: list[int] = []
    dispatch_once(ids.extend)
    assert len(send_batch(ids).sent) == 1
    with transaction() as s:
        d = s.scalar(select(Delivery))
        assert d is not None and d.message_id
        return d


def _person() -> tuple[str, list[str]]:
    with transaction() as s:
        sub = find_subscriber(s, "ann@example.com")
        assert sub is not None
        kinds = s.scalars(
            select(Event.kind).where(Event.subscriber_id == sub.id, Event.kind != "confirmed")
        )
        return sub.status, list(kinds)


def _basic(password: str) -> dict[str, str]:
    token = base64.b64encode(f"postmark:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _mailgun(name: str, d: Delivery, ts: int, token: str, key: str = SECRET) -> bytes:
    data = json.loads((HOOKS / name).read_text())
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    data["signature"] = {"timestamp": str(ts), "token": token, "signature": sig}
    # Mailgun gives the Message-ID header without its angle brackets.
    data["event-data"]["message"]["headers"]["message-id"] = (d.message_id or "").strip("<>")
    return json.dumps(data).encode()


def _sns(
    key: rsa.RSAPrivateKey,
    message: dict[str, Any] | str,
    at: datetime,
    *,
    kind: str = "Notification",
    version: str = "1",
    message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    topic: str = TOPIC,
    **extra: str,
) -> bytes:
    data: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        **extra,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns_string_to_sign(data), padding.PKCS1v15(), algorithm)
    data["Signature"] = base64.b64encode(signature).decode()
    return json.dumps(data).encode()


def _ses_message(name: str, d: Delivery) -> dict[str, Any]:
    text = (HOOKS / name).read_text().replace("MESSAGE_ID", d.message_id or "")
    return dict(json.loads(text))


# --- off unless configured ----------------------------------------------------------------


def test_without_the_secret_every_provider_answers_404(
    quick_sequence: str, clock: FrozenClock, eager_celery: None
) -> None:
    from nurture.web.app import create_app

    client = create_app(current(), TESTING=True).test_client()
    for provider in ("postmark", "mailgun", "ses"):
        assert client.post(f"/webhooks/mail/{provider}", data=b"{}").status_code == 404


def test_an_unknown_provider_is_404(hooked: FlaskClient) -> None:
    assert hooked.post("/webhooks/mail/sendgrid", data=b"{}").status_code == 404


# --- Postmark -----------------------------------------------------------------------------


def test_postmark_hard_bounce_with_the_password_ends_the_subscription(
    hooked: FlaskClient, sent: Delivery
) -> None:
    body = (HOOKS / "postmark_bounce.json").read_bytes()
    answer = hooked.post("/webhooks/mail/postmark", data=body, headers=_basic(SECRET))
    assert answer.status_code == 200 and answer.json == {"result": "accepted"}
    assert _person() == ("bounced", ["bounced"])
    # Postmark retries a call it thinks failed: the same one again changes nothing.
    again = hooked.post("/webhooks/mail/postmark", data=body, headers=_basic(SECRET))
    assert again.json == {"result": "duplicate"}
    assert _person() == ("bounced", ["bounced"])


def test_postmark_spam_complaint_suppresses(hooked: FlaskClient, sent: Delivery) -> None:
    body = (HOOKS / "postmark_spam_complaint.json").read_bytes()
    assert (
        hooked.post("/webhooks/mail/postmark", data=body, headers=_basic(SECRET)).status_code == 200
    )
    assert _person() == ("complained", ["complained"])


@pytest.mark.parametrize("headers", [{}, _basic("wrong"), {"Authorization": "Basic !!!"}])
def test_postmark_without_the_password_is_401(
    hooked: FlaskClient, sent: Delivery, headers: dict[str, str]
) -> None:
    body = (HOOKS / "postmark_bounce.json").read_bytes()
    assert hooked.post("/webhooks/mail/postmark", data=body, headers=headers).status_code == 401
    assert _person() == ("confirmed", [])


# --- Mailgun ------------------------------------------------------------------------------


def test_mailgun_signed_permanent_failure_bounces_by_message_id(
    hooked: FlaskClient, sent: Delivery, clock: FrozenClock
) -> None:
    ts = int(clock.now().timestamp())
    body = _mailgun("mailgun_failed_permanent.json", sent, ts, "a" * 50)
    answer = hooked.post("/webhooks/mail/mailgun", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.json
    assert _person() == ("bounced", ["bounced"])
    with transaction() as s:
        event = s.scalar(select(Event).where(Event.kind == "bounced"))
        assert event is not None and event.delivery_id == sent.id and event.step_id == sent.step_id
        assert event.data["status"] == "5.1.1" and "ann" not in json.dumps(event.data)


def test_mailgun_complaint(hooked: FlaskClient, sent: Delivery, clock: FrozenClock) -> None:
    ts = int(clock.now().timestamp())
    body = _mailgun("mailgun_complained.json", sent, ts, "b" * 50)
    assert hooked.post("/webhooks/mail/mailgun", data=body).status_code == 200
    assert _person() == ("complained", ["complained"])


def test_mailgun_forged_stale_and_replayed_calls_are_401(
    hooked: FlaskClient, sent: Delivery, clock: FrozenClock
) -> None:
    ts = int(clock.now().timestamp())
    name = "mailgun_complained.json"
    forged = _mailgun(name, sent, ts, "c" * 50, key="not-the-secret")
    stale = _mailgun(name, sent, ts - 3600, "d" * 50)
    for body in (forged, stale, b"not json"):
        assert hooked.post("/webhooks/mail/mailgun", data=body).status_code == 401
    assert _person() == ("confirmed", [])
    good = _mailgun(name, sent, ts, "e" * 50)
    assert hooked.post("/webhooks/mail/mailgun", data=good).status_code == 200
    # The very same signed call again: its token was used.
    assert hooked.post("/webhooks/mail/mailgun", data=good).status_code == 401


# --- Amazon SES through SNS -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounce_with_a_real_sns_signature(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
    version: str,
) -> None:
    message = _ses_message("ses_bounce_message.json", sent)
    body = _sns(sns_key[0], message, clock.now(), version=version)
    answer = hooked.post("/webhooks/mail/ses", data=body)
    assert answer.status_code == 200, answer.json
    assert _person() == ("bounced", ["bounced"])
    assert fetcher.urls == [CERT_URL]


def test_ses_complaint(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
) -> None:
    message = _ses_message("ses_complaint_message.json", sent)
    answer = hooked.post("/webhooks/mail/ses", data=_sns(sns_key[0], message, clock.now()))
    assert answer.status_code == 200
    assert _person() == ("complained", ["complained"])


def test_ses_subscription_confirmation_visits_the_subscribe_url(
    hooked: FlaskClient,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
) -> None:
    subscribe = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t0k"
    body = _sns(
        sns_key[0],
        "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        clock.now(),
        kind="SubscriptionConfirmation",
        Token="t0k",
        SubscribeURL=subscribe,
    )
    answer = hooked.post("/webhooks/mail/ses", data=body)
    assert answer.status_code == 200 and answer.json == {"result": "subscribed"}
    assert fetcher.urls == [CERT_URL, subscribe]


def test_ses_forged_stale_replayed_and_foreign_certificates_are_401(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
) -> None:
    key = sns_key[0]
    message = _ses_message("ses_bounce_message.json", sent)
    at = clock.now()
    tampered = json.loads(_sns(key, message, at))
    tampered["Message"] = tampered["Message"].replace("Permanent", "Transient")
    foreign = json.loads(_sns(key, message, at))
    foreign["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
    plain_http = json.loads(_sns(key, message, at))
    plain_http["SigningCertURL"] = CERT_URL.replace("https://", "http://")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for body in (
        json.dumps(tampered).encode(),
        json.dumps(foreign).encode(),
        json.dumps(plain_http).encode(),
        _sns(other_key, message, at),  # signed, but not by the certificate's key
        _sns(key, message, at - timedelta(hours=2)),  # stale
    ):
        assert hooked.post("/webhooks/mail/ses", data=body).status_code == 401
    assert _person() == ("confirmed", [])
    assert all(url == CERT_URL for url in fetcher.urls)  # no other host was ever fetched
    good = _sns(key, message, at)
    assert hooked.post("/webhooks/mail/ses", data=good).status_code == 200
    assert hooked.post("/webhooks/mail/ses", data=good).status_code == 401  # replayed
    assert _person() == ("bounced", ["bounced"])


# --- issue 19: only our topic, only the providers switched on, one answer for all -----------


def _subscription(key: rsa.RSAPrivateKey, at: datetime, topic: str, link: str) -> bytes:
    return _sns(
        key,
        "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        at,
        kind="SubscriptionConfirmation",
        message_id="sub-" + hashlib.sha256(link.encode()).hexdigest()[:12],
        topic=topic,
        Token="t0k",
        SubscribeURL=link,
    )


def test_ses_complaint_from_another_accounts_topic_is_refused_unfetched(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
) -> None:
    """A free AWS account subscribes our URL to its own topic and publishes a Complaint
    naming someone on the list: Amazon's signature on it is real, the topic is not ours."""
    message = _ses_message("ses_complaint_message.json", sent)
    body = _sns(sns_key[0], message, clock.now(), topic=THEIR_TOPIC, version="2")
    answer = hooked.post("/webhooks/mail/ses", data=body)
    assert answer.status_code == 401 and answer.json == {"result": "unverified"}
    assert _person() == ("confirmed", [])
    assert fetcher.urls == []  # refused before any certificate was fetched


def _confirm_link(host: str, topic: str) -> str:
    return f"https://{host}/?Action=ConfirmSubscription&TopicArn={topic}&Token=t0k"


@pytest.mark.parametrize(
    ("topic", "link"),
    [
        # Their topic, confirmed by a link on Amazon's own host.
        (THEIR_TOPIC, _confirm_link("sns.us-east-1.amazonaws.com", THEIR_TOPIC)),
        # Our topic named in the message, but the link confirms theirs.
        (TOPIC, _confirm_link("sns.us-east-1.amazonaws.com", THEIR_TOPIC)),
        # Our topic, a link off Amazon's hosts.
        (TOPIC, _confirm_link("evil.example", TOPIC)),
    ],
)
def test_ses_subscription_is_confirmed_only_for_our_topic(
    hooked: FlaskClient,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
    topic: str,
    link: str,
) -> None:
    answer = hooked.post(
        "/webhooks/mail/ses", data=_subscription(sns_key[0], clock.now(), topic, link)
    )
    assert answer.status_code == 401 and answer.json == {"result": "unverified"}
    assert link not in fetcher.urls  # the subscription was never confirmed


def _complaint(
    provider: str, who: str, d: Delivery, n: int, key: rsa.RSAPrivateKey, at: datetime
) -> tuple[bytes, dict[str, str]]:
    """A verified complaint naming ann (on the list, by her address and her email's
    Message-ID), a stranger, or nobody. `n` keeps each call a notification of its own."""
    email = {"ann": "ann@example.com", "stranger": "zed@example.net", "nobody": None}[who]
    message_id = d.message_id if who == "ann" else f"<unknown.{n}@example.org>"
    if provider == "postmark":
        data = json.loads((HOOKS / "postmark_spam_complaint.json").read_text())
        data["ID"], data["Email"] = 1000 + n, email
        return json.dumps(data).encode(), _basic(SECRET)
    if provider == "mailgun":
        data = json.loads(
            _mailgun("mailgun_complained.json", d, int(at.timestamp()), f"tok{n:047d}")
        )
        event = data["event-data"]
        event["id"], event["recipient"] = f"event-{n}", email
        event["message"]["headers"]["message-id"] = (message_id or "").strip("<>")
        return json.dumps(data).encode(), {"Content-Type": "application/json"}
    message = _ses_message("ses_complaint_message.json", d)
    message["mail"]["commonHeaders"]["messageId"] = message_id
    message["complaint"]["complainedRecipients"] = [{"emailAddress": email}] if email else []
    return _sns(key, message, at, message_id=f"sns-{n}"), {}


@pytest.mark.parametrize("provider", ["postmark", "mailgun", "ses"])
def test_a_verified_call_answers_the_same_whoever_it_names(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    caplog: pytest.LogCaptureFixture,
    provider: str,
) -> None:
    """Else the webhook tells whether an address is on the list (a membership oracle)."""
    caplog.set_level(logging.DEBUG)
    answers = []
    for n, who in enumerate(("stranger", "nobody", "ann")):
        body, headers = _complaint(provider, who, sent, n, sns_key[0], clock.now())
        answer = hooked.post(f"/webhooks/mail/{provider}", data=body, headers=headers)
        answers.append((answer.status_code, answer.get_data()))
    assert answers == [(200, b'{"result":"accepted"}\n')] * 3
    assert _person() == ("complained", ["complained"])  # ann's was acted on all the same
    assert "ann@example.com" not in caplog.text and "zed@example.net" not in caplog.text


def _app(monkeypatch: pytest.MonkeyPatch, fetcher: Fetcher, **env: str) -> FlaskClient:
    for name in ("MAIL_WEBHOOK_SECRET", "SES_TOPIC_ARN", "MAIL_WEBHOOK_PROVIDERS"):
        monkeypatch.delenv(f"NURTURE_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"NURTURE_{name}", value)
    reload_runtime()
    from nurture.web.app import create_app

    return create_app(current(), TESTING=True, SNS_FETCH=fetcher).test_client()


def _on(client: FlaskClient) -> set[str]:
    """The providers that answer at all (an unsigned call: 401 when on, 404 when off)."""
    codes = {
        p: client.post(f"/webhooks/mail/{p}", data=b"{}").status_code
        for p in ("postmark", "mailgun", "ses")
    }
    assert set(codes.values()) <= {401, 404}, codes
    return {p for p, code in codes.items() if code == 401}


def test_each_provider_is_on_only_with_its_own_setting(
    hooked: FlaskClient,
    sent: Delivery,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    sns_key: tuple[rsa.RSAPrivateKey, bytes],
    fetcher: Fetcher,
) -> None:
    """A practice on Postmark alone must not have an SES endpoint open because it set the
    webhook secret."""
    assert _on(_app(monkeypatch, fetcher, MAIL_WEBHOOK_SECRET=SECRET)) == {"postmark", "mailgun"}
    assert _on(
        _app(monkeypatch, fetcher, MAIL_WEBHOOK_SECRET=SECRET, MAIL_WEBHOOK_PROVIDERS="postmark")
    ) == {"postmark"}
    both = _app(
        monkeypatch,
        fetcher,
        MAIL_WEBHOOK_SECRET=SECRET,
        SES_TOPIC_ARN=TOPIC,
        MAIL_WEBHOOK_PROVIDERS="ses,Postmark",
    )
    assert _on(both) == {"postmark", "ses"}
    ses_only = _app(monkeypatch, fetcher, SES_TOPIC_ARN=TOPIC)  # SES needs no shared secret
    assert _on(ses_only) == {"ses"}
    message = _ses_message("ses_bounce_message.json", sent)
    answer = ses_only.post("/webhooks/mail/ses", data=_sns(sns_key[0], message, clock.now()))
    assert answer.status_code == 200 and _person() == ("bounced", ["bounced"])


PROVIDERS = "NURTURE_MAIL_WEBHOOK_PROVIDERS"
WRONG_SETTINGS = [
    ({"NURTURE_SES_TOPIC_ARN": "ses-feedback"}, "NURTURE_SES_TOPIC_ARN: must be an SNS topic ARN"),
    (
        {PROVIDERS: "postmark,sendgrid", "NURTURE_MAIL_WEBHOOK_SECRET": SECRET},
        f"{PROVIDERS}: unknown provider 'sendgrid'",
    ),
    (
        {PROVIDERS: "ses", "NURTURE_MAIL_WEBHOOK_SECRET": SECRET},
        f"{PROVIDERS} turns ses on, which needs NURTURE_SES_TOPIC_ARN",
    ),
    (
        {PROVIDERS: "mailgun", "NURTURE_SES_TOPIC_ARN": TOPIC},
        f"{PROVIDERS} turns mailgun on, which needs NURTURE_MAIL_WEBHOOK_SECRET",
    ),
]


@pytest.mark.parametrize(("env", "says"), WRONG_SETTINGS)
def test_a_wrong_webhook_setting_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str], env: dict[str, str], says: str
) -> None:
    from nurture.config import load_settings
    from nurture.errors import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(says) and "\n" not in str(err.value)
    assert SECRET not in str(err.value)
