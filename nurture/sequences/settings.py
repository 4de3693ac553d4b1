"""A sequence's settings as one typed object, read from the validated sequence.yaml kept in
`sequences.settings`. Every reader (emails, pages, scheduling, tracking) asks this object
instead of looking keys up in the raw dict, so a setting means the same everywhere.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nurture.context import current
from nurture.sequences.schedule import SendWindow
from nurture.sequences.spec import ConsultSpec, DiscreetSpec, FromSpec, WindowSpec


class SequenceSettings(BaseModel):
    # Keys added later by other features are kept in the raw dict and ignored here.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    from_: FromSpec = Field(alias="from")
    reply_to: str | None = None
    consult: ConsultSpec
    postal_address: str
    timezone: str = "UTC"
    send_window: WindowSpec = Field(default_factory=WindowSpec)
    # Reader-local dates with no mail ("12-25" yearly, "2027-04-05" once): part of `window`.
    quiet_days: list[str] = Field(default_factory=list)
    discreet: DiscreetSpec | None = None
    tracking: dict[str, bool] | None = None
    article: dict[str, str] | None = None
    # What a reader's reply does to their series (nurture/feedback/handling.py).
    on_reply: Literal["pause", "stop", "continue"] = "pause"

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
