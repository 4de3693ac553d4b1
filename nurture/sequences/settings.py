"""A sequence's settings as one typed object: every field of sequence.yaml but its slug, name
and steps, declared and checked once. The file format (nurture/sequences/spec.py) extends it
with those three; the database keeps the settings part as JSON (`sequences.settings`) and
reads it back through this same model. Every reader (emails, pages, scheduling, tracking)
asks this object instead of looking keys up in the raw dict, so a setting means the same
everywhere.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
)

from nurture.context import current
from nurture.sequences.schedule import QuietDays, SendWindow, is_valid_timezone, parse_quiet_day


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FromSpec(_Strict):
    name: str = Field(min_length=1, max_length=100)
    email: EmailStr


class ConsultSpec(_Strict):
    url: str
    text: str = Field(default="Book a free consult", min_length=1, max_length=200)
    # Leads into the button at the foot of every email.
    note: str = Field(default="", max_length=500)

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("consult.url must be an absolute http(s) URL")
        return v


class WindowSpec(_Strict):
    start: str = "09:00"
    end: str = "11:00"
    days: list[str] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )
    # A first step with delay 0 goes out right after confirmation, whatever the hour: the
    # reader just asked for it and is waiting. Later steps always keep to the window.
    first_step_immediately: bool = True


class DiscreetSpec(_Strict):
    """For readers who share or fear a watched inbox: nothing visible names the subject."""

    # Off keeps the block ready for a practice to switch on; present and on means every
    # email of the sequence goes out under the neutral name and subjects.
    enabled: bool = True
    from_name: str = Field(min_length=1, max_length=100)
    # step key -> neutral subject; a step without one keeps its own subject.
    subjects: dict[str, str] = Field(default_factory=dict)


def _quiet_day_text(v: Any) -> Any:
    # An unquoted 2027-04-05 reaches us as a date; keep the text form the file meant.
    return v.isoformat() if isinstance(v, date) else v


def _check_quiet_day(v: str) -> str:
    parse_quiet_day(v)
    return v


# Each date is checked on its own, so an error names the item (and its line).
QuietDay = Annotated[str, BeforeValidator(_quiet_day_text), AfterValidator(_check_quiet_day)]


class SequenceSettings(BaseModel):
    # Stored settings may hold keys a later version added: kept in the raw dict, ignored
    # here. The file format forbids unknown keys (SequenceSpec).
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    from_: FromSpec = Field(alias="from")
    reply_to: EmailStr | None = None
    consult: ConsultSpec
    postal_address: str = Field(min_length=5, max_length=300)
    timezone: str = "UTC"  # for readers whose own zone is unknown
    send_window: WindowSpec = Field(default_factory=WindowSpec)
    # Reader-local dates with no mail: "12-25" every year, "2027-04-05" once.
    quiet_days: list[QuietDay] = Field(default_factory=list)
    # Neutral From name and subjects for readers who share an inbox (see the content docs).
    discreet: DiscreetSpec | None = None
    tracking: dict[str, bool] | None = None
    article: dict[str, str] | None = None
    # What a reader's reply does to their place in this sequence: hold it until the
    # practice resumes it (`subscribers resume`), end it, or carry on
    # (nurture/feedback/handling.py).
    on_reply: Literal["pause", "stop", "continue"] = "pause"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        if not is_valid_timezone(v):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/London)")
        return v

    @field_validator("send_window")
    @classmethod
    def _window(cls, v: WindowSpec) -> WindowSpec:
        SendWindow.from_config(v.model_dump())
        return v

    @field_validator("quiet_days")
    @classmethod
    def _some_day_left(cls, v: list[str]) -> list[str]:
        QuietDays.parse(list(v))
        return v

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> SequenceSettings:
        return cls.model_validate(raw or {})

    @functools.cached_property
    def window(self) -> SendWindow:
        return SendWindow.from_config(self.send_window.model_dump(), list(self.quiet_days))

    @property
    def first_step_immediately(self) -> bool:
        return self.send_window.first_step_immediately

    @property
    def practice(self) -> str:
        return self.from_.name

    @property
    def is_discreet(self) -> bool:
        """`discreet:` present and enabled: nothing reaching the inbox names the topic."""
        return self.discreet is not None and self.discreet.enabled

    @property
    def inbox_from_name(self) -> str:
        """The From name readers see: the neutral one in discreet mode."""
        assert self.discreet is None or self.discreet.from_name
        return self.discreet.from_name if self.is_discreet and self.discreet else self.from_.name

    def subject_for(self, step_key: str, subject: str) -> str:
        if self.is_discreet and self.discreet:
            return self.discreet.subjects.get(step_key, subject)
        return subject

    @property
    def clicks_override(self) -> bool | None:
        value = (self.tracking or {}).get("clicks")
        return None if value is None else bool(value)

    @property
    def article_title(self) -> str | None:
        return (self.article or {}).get("title")

    def list_label(self, slug: str, secret: str) -> str:
        """What List-Id and Message-ID carry for the sequence: its slug, or in discreet mode
        a keyed label that says nothing (the slug names the topic)."""
        if not self.is_discreet:
            return slug
        digest = hashlib.sha256(f"{secret}:list:{slug}".encode()).hexdigest()[:12]
        return f"n{digest}"


def clicks_tracked(config: SequenceSettings) -> bool:
    """NURTURE_TRACK_CLICKS, unless the sequence says otherwise (`tracking: {clicks: ...}`)."""
    override = config.clicks_override
    if override is not None:
        return override
    return current().settings.track_clicks
