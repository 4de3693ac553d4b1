"""Settings, read from NURTURE_* environment variables and a .env file.

Every name here is part of the outside contract (shared/CONTRACT.md); defaults are the
embedded, one-machine setup: SQLite, Celery over the SQLAlchemy transport, mail to ./outbox.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import re
import secrets
from collections import Counter
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nurture.errors import ConfigError

log = logging.getLogger(__name__)

DEV_SECRET_KEY = "nurture-development-key-do-not-use-in-production"
# Keys anyone can read (this source, .env.example): with one, anyone can forge every token.
PUBLISHED_SECRET_KEYS = {DEV_SECRET_KEY, "replace-me-with-openssl-rand-hex-32"}
MIN_SECRET_LENGTH = 16
# `openssl rand -hex 16` carries 128 bits; a key that looks like fewer than this many is a
# word, a repeated pattern or a placeholder.
MIN_SECRET_BITS = 64
# The data key (NURTURE_DATA_KEY): 32 random bytes, urlsafe base64 (`nurture keys new`). The
# development key below is published here: without a key set, development seals with it
# (and says so); production refuses it, as it refuses the development secret key.
KEY_BYTES = 32
DEV_DATA_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"nurture development data key").digest()
).decode()
PUBLISHED_DATA_KEYS = {DEV_DATA_KEY, "replace-me-with-the-output-of-nurture-keys-="}
MAIL_SCHEMES = {"smtp", "smtps", "file", "memory"}
BROKER_SCHEMES = {"redis", "rediss", "amqp", "pyamqp", "sqla+sqlite", "sqla+postgresql", "memory"}
# The provider webhooks at POST /webhooks/mail/<provider>, and the setting each one needs.
MAIL_WEBHOOK_NEEDS = {
    "postmark": "mail_webhook_secret",
    "mailgun": "mail_webhook_secret",
    "ses": "ses_topic_arn",
}
# arn:PARTITION:sns:REGION:ACCOUNT:TOPIC, as the SNS console shows a topic's ARN.
SNS_TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NURTURE_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        # NURTURE_SECRET_KEY= (empty) must not count as a key, nor switch the webhook on.
        env_ignore_empty=True,
    )

    database_url: str = "sqlite:///nurture.db"
    broker_url: str = "sqla+sqlite:///nurture-broker.db"
    mail_url: str = "file://./outbox"
    base_url: str = "http://localhost:8000"
    secret_key: SecretStr | None = None
    env: Literal["development", "production"] = "development"
    dkim_selector: str | None = None
    dkim_private_key: str | None = None
    track_clicks: bool = False
    track_opens: bool = False
    booking_webhook_key: SecretStr | None = None

    # What comes back (bounces, complaints, replies): see nurture/feedback/handling.py.
    bounce_address: str | None = None
    inbox_url: SecretStr | None = None  # holds the mailbox password
    mail_webhook_secret: SecretStr | None = None
    # SES reports through SNS: only this topic's messages are believed (a stranger's AWS
    # account can subscribe our URL to a topic of its own, and Amazon signs those too).
    ses_topic_arn: str | None = None
    # "postmark,ses": which provider webhooks are on; unset, those whose settings are present.
    mail_webhook_providers: str | None = None
    # The relay's limits, for all workers together (nurture/delivery/limits.py); unset: none.
    send_rate: float | None = Field(default=None, gt=0)  # messages per second
    send_daily_limit: int | None = Field(default=None, ge=1)  # messages per UTC day

    # Operational knobs beyond the contract; the defaults suit a small practice.
    batch_size: int = Field(default=100, ge=1, le=10_000)
    lease_seconds: int = Field(default=300, ge=5)
    dispatch_interval: float = Field(default=15.0, gt=0)
    # The Celery queue: lets several installs (or test runs) share one Redis.
    queue: str = Field(default="nurture", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # "SIM_ISO@REAL_EPOCHxSPEED": a shared, sped-up clock for demos and tests (see clock.py).
    clock: str | None = None
    # The web side (signup, embed, rate limits). NURTURE_RATE_LIMIT=false turns limits off
    # (benchmarks); NURTURE_PROXY_HOPS tells how many reverse proxies set X-Forwarded-For.
    rate_limit: bool = True
    signup_rate_limit: str = "10 per minute;60 per hour"
    proxy_hops: int = Field(default=0, ge=0, le=5)
    # Who may frame GET /embed/<slug> (CSP frame-ancestors); every other page may not be framed.
    embed_ancestors: str = "*"
    # Where the top-level templates/ folder is, when nurture runs from an installed package.
    templates_dir: str | None = None

    # Event webhooks (Standard Webhooks) and the retention limit: issue 14.
    events_url: str | None = None
    events_secret: SecretStr | None = None
    retention_days: int | None = Field(default=None, ge=1, le=36_500)

    # Personal data at rest (nurture/encryption.py) and how long an unconfirmed signup stays.
    data_key: SecretStr | None = None
    data_key_previous: SecretStr | None = None  # comma-separated older keys, while rotating
    pending_days: int = Field(default=30, ge=1, le=3650)
    # The practice's own zone: every time the CLI and the dashboard show is in it, zone named.
    # Unset: the machine's local zone (clock.practice_zone).
    timezone: str | None = None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except ArgumentError as exc:
            raise ValueError("not a SQLAlchemy URL (e.g. sqlite:///nurture.db)") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite:// and postgresql:// databases are supported")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name (e.g. America/New_York, Europe/Paris)") from None
        return v.strip()

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in BROKER_SCHEMES:
            raise ValueError(f"unknown broker scheme {scheme!r} (use redis:// or sqla+sqlite://)")
        return v

    @field_validator("mail_url")
    @classmethod
    def _mail_url(cls, v: str) -> str:
        scheme = urlsplit(v).scheme
        if scheme not in MAIL_SCHEMES:
            raise ValueError(
                f"unknown mail scheme {scheme!r} (use smtp://, smtps://, file:// or memory://)"
            )
        if scheme in {"smtp", "smtps"} and not urlsplit(v).hostname:
            raise ValueError("an smtp:// URL needs a host, e.g. smtp://localhost:25")
        return v

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        local, at, domain = v.strip().rpartition("@")
        if not at or not local or "." not in domain or "+" in local or not v.isascii():
            raise ValueError(
                "must be a plain ASCII address without a +tag, e.g. bounces@example.org"
            )
        return v.strip().lower()

    @field_validator("inbox_url")
    @classmethod
    def _inbox_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        try:
            parts = urlsplit(v.get_secret_value())
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise ValueError("not a URL (e.g. imaps://user:pass@imap.example.org/INBOX)") from None
        if parts.scheme not in {"imap", "imaps"}:
            raise ValueError(f"unknown inbox scheme {parts.scheme!r} (use imap:// or imaps://)")
        if not parts.hostname or not parts.username:
            raise ValueError("needs a user and a host, e.g. imaps://user:pass@imap.example.org")
        return v

    @field_validator("ses_topic_arn")
    @classmethod
    def _ses_topic_arn(cls, v: str | None) -> str | None:
        if v is not None and not SNS_TOPIC_ARN.match(v.strip()):
            raise ValueError(
                "must be an SNS topic ARN, e.g. arn:aws:sns:us-east-1:123456789012:ses-feedback"
            )
        return v.strip() if v is not None else v

    @field_validator("mail_webhook_providers")
    @classmethod
    def _mail_webhook_providers(cls, v: str | None) -> str | None:
        if v is None:
            return v
        names = [name.strip().lower() for name in v.split(",")]
        unknown = [name for name in names if name not in MAIL_WEBHOOK_NEEDS]
        if unknown:
            raise ValueError(
                f"unknown provider {unknown[0]!r} (use postmark, mailgun, ses, comma-separated)"
            )
        return ",".join(sorted(set(names)))

    @model_validator(mode="after")
    def _mail_webhooks_need_their_settings(self) -> Settings:
        # A provider named on but missing its setting would answer 404 while the operator
        # believes it is on: say so at start-up instead.
        for name in (self.mail_webhook_providers or "").split(","):
            needed = MAIL_WEBHOOK_NEEDS.get(name)
            if needed and getattr(self, needed) is None:
                raise ValueError(
                    f"NURTURE_MAIL_WEBHOOK_PROVIDERS turns {name} on, "
                    f"which needs NURTURE_{needed.upper()}"
                )
        return self

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, e.g. https://example.org")
        return v.rstrip("/")

    @field_validator("events_url")
    @classmethod
    def _events_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL, e.g. https://crm.example.org/hooks")
        return v

    @field_validator("events_secret")
    @classmethod
    def _events_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not raw.startswith("whsec_") or len(key) < 24:
            raise ValueError(
                "must be whsec_ followed by base64 of at least 24 random bytes "
                "(e.g. whsec_$(openssl rand -base64 32))"
            )
        return v

    @field_validator("data_key", "data_key_previous")
    @classmethod
    def _data_keys(cls, v: SecretStr | None) -> SecretStr | None:
        for text in _split_keys(v):
            key_bytes(text)  # raises ValueError with what is wrong, never the key itself
        return v

    @model_validator(mode="after")
    def _events_need_secret(self) -> Settings:
        if self.events_url and self.events_secret is None:
            raise ValueError("NURTURE_EVENTS_SECRET is required when NURTURE_EVENTS_URL is set")
        return self

    @model_validator(mode="after")
    def _production_needs_secret(self) -> Settings:
        if self.env != "production":
            return self
        if self.secret_key is None:
            raise ValueError("NURTURE_SECRET_KEY is required when NURTURE_ENV=production")
        problem = weak_secret(self.secret_key.get_secret_value())
        if problem:
            raise ValueError(
                f"NURTURE_SECRET_KEY is {problem} for production: use `openssl rand -hex 32`"
            )
        if self.data_key is None:
            raise ValueError("NURTURE_DATA_KEY is required when NURTURE_ENV=production")
        problem = weak_data_key(self.data_key.get_secret_value())
        if problem:
            raise ValueError(f"NURTURE_DATA_KEY is {problem}: use `nurture keys new`")
        return self

    @property
    def secret(self) -> str:
        if self.secret_key is None:
            warn_dev_key()
            return DEV_SECRET_KEY
        return self.secret_key.get_secret_value()

    @property
    def previous_data_keys(self) -> list[str]:
        return _split_keys(self.data_key_previous)

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+") or self.broker_url.startswith("memory")

    @property
    def events_key(self) -> bytes | None:
        """The raw HMAC key of NURTURE_EVENTS_SECRET, or None when event webhooks are off."""
        if not self.events_url or self.events_secret is None:
            return None
        return base64.b64decode(self.events_secret.get_secret_value().removeprefix("whsec_"))

    @property
    def mail_webhooks(self) -> frozenset[str]:
        """The providers whose webhook is on: those named, else those whose settings are set."""
        if self.mail_webhook_providers:
            return frozenset(self.mail_webhook_providers.split(","))
        return frozenset(
            name for name, needed in MAIL_WEBHOOK_NEEDS.items() if getattr(self, needed)
        )

    @property
    def dkim_enabled(self) -> bool:
        return bool(self.dkim_selector and self.dkim_private_key)


def _split_keys(value: SecretStr | None) -> list[str]:
    if value is None:
        return []
    return [part.strip() for part in value.get_secret_value().split(",") if part.strip()]


def new_data_key() -> str:
    """A fresh data key, as NURTURE_DATA_KEY takes it (`nurture keys new`)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_bytes(text: str) -> bytes:
    """The 32 bytes of a data key in its text form; ValueError saying what is wrong."""
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("must be urlsafe base64 (make one with `nurture keys new`)") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} random bytes in urlsafe base64 (`nurture keys new`)")
    return raw


def weak_data_key(text: str) -> str | None:
    """Why `text` may not guard production data, or None. Never says what the key is."""
    if text.strip() in PUBLISHED_DATA_KEYS or "replace-me" in text:
        return "a published example key"
    try:
        raw = key_bytes(text)
    except ValueError as exc:
        return str(exc)
    # 32 random bytes almost always hold more than 25 different values; a repeated pattern
    # or a short word padded out does not.
    if len(set(raw)) < 16:
        return "too predictable (not random bytes)"
    return None


def weak_secret(key: str) -> str | None:
    """Why `key` may not sign production tokens, or None. Never says what the key is."""
    if key in PUBLISHED_SECRET_KEYS or "replace-me" in key:
        return "a published example key"
    if len(key) < MIN_SECRET_LENGTH:
        return "too short"
    # Shannon entropy of the key's own characters, times its length: a rough measure that
    # catches "aaaa...", "abababab..." and dictionary-like keys without judging real ones.
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    if per_char * len(key) < MIN_SECRET_BITS or len(counts) < 8:
        return "too predictable (low entropy)"
    return None


def _one_line(exc: ValidationError) -> str:
    # One clear line naming the variable; never echo the offending value (it may be a secret).
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    name = f"NURTURE_{str(loc[0]).upper()}" if loc else "configuration"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc and msg.startswith("NURTURE_"):
        return msg
    return f"{name}: {msg}"


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    return settings


# Set once the warning below has been shown (see warn_once).
WARNED_ENV = "NURTURE_DEV_KEY_WARNED"


def warn_dev_key() -> None:
    """Warn when something signs with the development key. Only when a key is used:
    `db upgrade` or `sequences list` sign nothing and need not say it."""
    warn_once(
        WARNED_ENV,
        "NURTURE_SECRET_KEY is not set: using the development key. "
        "Tokens in emails are forgeable until you set one.",
    )


def warn_once(flag: str, message: str) -> None:
    """Log a warning once per process tree: the processes `nurture run` starts inherit the
    flag in their environment, so the operator reads it once, not five times."""
    if os.environ.get(flag):
        return
    os.environ[flag] = "1"
    log.warning("%s", message)


# Addresses that mean "this machine" in a URL, and those a server binds to listen on all of
# its addresses: a link to either reaches a server bound to any of them from here.
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def listening_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens to reach a server bound to host:port."""
    shown = "localhost" if host in LOOPBACK_NAMES | WILDCARD_HOSTS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def base_url_elsewhere(base_url: str, host: str, port: int) -> bool:
    """NURTURE_BASE_URL names this machine, but not where the server listens. A public URL
    never counts: a reverse proxy answers it on a port of its own."""
    parts = urlsplit(base_url)
    name = (parts.hostname or "").lower()
    if name not in LOOPBACK_NAMES and name != host.lower():
        return False
    loopback_only = host in LOOPBACK_NAMES | WILDCARD_HOSTS
    if name in LOOPBACK_NAMES and not loopback_only:
        return True  # bound to one outside address: localhost does not reach it
    return (parts.port or (443 if parts.scheme == "https" else 80)) != port
