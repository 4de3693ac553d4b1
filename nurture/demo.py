"""`nurture demo`: the whole default sequence, played on a throw-away embedded setup with
days compressed to seconds.

Everything real runs: the Flask signup form, the confirmation email, the confirm button,
the dispatch pass and the sender writing .eml files. Only time is fast (a ScaledClock) and
sending runs in this process instead of a Celery worker, so nothing else has to be started.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from nurture.clock import ScaledClock, now
from nurture.context import use
from nurture.db import transaction
from nurture.runtime import Runtime

DEFAULT_SLUG = "partner-refuses-therapy"
READER = "sam.demo@example.com"
READER_ZONE = "America/New_York"
# A Monday evening in May: the welcome goes out at once, the rest on the following mornings.
SIM_START = datetime(2026, 5, 4, 19, 30, tzinfo=ZoneInfo(READER_ZONE))
# After this many emails the demo reader writes back, and the practice answers in person
# for this long before it lets the series go on.
REPLY_AFTER = 2
PAUSE_FOR = timedelta(days=2)


@dataclass
class SentEmail:
    step: str
    subject: str
    sent_at: datetime
    eml: Path
    html: Path


@dataclass
class DemoResult:
    workdir: Path
    steps: list[str]
    sent: list[SentEmail] = field(default_factory=list)
    real_seconds: float = 0.0
    paused: bool = False  # the simulated reply paused the series
    resumed: bool = False

    @property
    def complete(self) -> bool:
        return [e.step for e in self.sent] == self.steps


def _isolate(workdir: Path) -> dict[str, str]:
    env = {
        "NURTURE_DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
        "NURTURE_BROKER_URL": "memory://",
        "NURTURE_MAIL_URL": f"file://{workdir / 'outbox'}",
        "NURTURE_BASE_URL": "http://localhost:8000",
        "NURTURE_SECRET_KEY": secrets.token_hex(32),
        "NURTURE_ENV": "development",
        "NURTURE_TRACK_CLICKS": "false",
        "NURTURE_TRACK_OPENS": "false",
    }
    saved = {k: v for k, v in os.environ.items() if k.startswith("NURTURE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    return saved


def _restore(saved: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("NURTURE_")]:
        del os.environ[key]
    os.environ.update(saved)


def _sign_up_through_the_form(runtime: Runtime, slug: str, outbox: Path) -> None:
    from nurture.subscribers.confirmation import send_confirmation
    from nurture.web.app import create_app

    app = create_app(runtime, ENQUEUE_CONFIRMATION=send_confirmation, RATELIMIT_ENABLED=False)
    client = app.test_client()
    page = client.get(f"/subscribe/{slug}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("the signup page has no form token")
    answer = client.post(
        f"/subscribe/{slug}",
        data={
            "email": READER,
            "first_name": "Sam",
            "timezone": READER_ZONE,
            "website": "",
            "csrf_token": token.group(1),
        },
    )
    if answer.status_code != 200:
        raise RuntimeError(f"the signup form answered {answer.status_code}")
    confirmation = max(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    msg = message_from_bytes(confirmation.read_bytes(), policy=default)
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    link = re.search(r"https?://\S+/confirm/(\S+)", text)
    if link is None:
        raise RuntimeError("the confirmation email has no confirm link")
    client.get(f"/confirm/{link.group(1)}")  # what a mail scanner would do: changes nothing
    client.post(f"/confirm/{link.group(1)}")  # the reader presses the button


def _reply_to(sent: SentEmail, inbox: Path) -> None:
    """What a reader's mail client would put in the practice's inbox: a reply naming our
    Message-ID. Simulated, and it says so in a header of its own."""
    from email.message import EmailMessage

    original = message_from_bytes(sent.eml.read_bytes(), policy=default)
    # Long Message-IDs stay literal, as mail clients write them (no encoded-word folding).
    reply = EmailMessage(policy=default.clone(max_line_length=998))
    reply["From"] = f"Sam <{READER}>"
    reply["To"] = str(original["From"])
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Message-ID"] = "<simulated-reply.1@example.com>"
    reply["In-Reply-To"] = str(original["Message-ID"])
    reply["References"] = str(original["Message-ID"])
    reply["X-Nurture-Demo"] = "a simulated reader reply"
    reply.set_content("This is us exactly. Can we talk?\n\nSam\n")
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "reply.eml").write_bytes(reply.as_bytes())


def _reader_replies(sent: SentEmail, workdir: Path) -> None:
    """The reply goes into the demo's inbox folder and is read by the same pass as
    `nurture inbox check` (which reads an IMAP mailbox instead)."""
    from nurture.feedback.inbox import FolderSource, process

    inbox = workdir / "inbox"
    _reply_to(sent, inbox)
    with FolderSource(inbox) as source:
        process(source, origin="demo")


def _practice_resumes() -> None:
    from nurture.subscribers.addresses import get_subscriber
    from nurture.subscribers.holding import resume

    with transaction() as s:
        resume(s, get_subscriber(s, READER), by="demo")


def _series_paused() -> bool:
    from nurture.subscribers.models import Enrollment, EnrollmentStatus

    with transaction() as s:
        return s.scalar(select(Enrollment.status)) == EnrollmentStatus.PAUSED


def run_demo(
    day_seconds: float,
    on_sent: Callable[[SentEmail, DemoResult], None],
    *,
    workdir: Path | None = None,
    timeout: float = 600.0,
    on_note: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    from nurture.config import load_settings
    from nurture.runtime import create_runtime

    workdir = workdir or Path(tempfile.mkdtemp(prefix="nurture-demo-"))
    # The demo's own settings, whatever the operator's environment says; once read, the
    # environment is given back: nothing below reads it again.
    saved = _isolate(workdir)
    try:
        runtime = create_runtime(load_settings())
    finally:
        _restore(saved)
    with use(runtime):
        try:
            return _Play(runtime, workdir, day_seconds, on_sent, on_note).run(timeout)
        finally:
            runtime.close()


class _Play:
    """One demo reader through the default sequence, on the runtime's fast clock."""

    def __init__(
        self,
        runtime: Runtime,
        workdir: Path,
        day_seconds: float,
        on_sent: Callable[[SentEmail, DemoResult], None],
        on_note: Callable[[str], None],
    ) -> None:
        self.runtime, self.workdir, self.outbox = runtime, workdir, workdir / "outbox"
        self.speed = 86400.0 / day_seconds
        self.on_sent, self.on_note = on_sent, on_note
        self.shown: set[int] = set()
        self.resume_at: datetime | None = None
        self.result = DemoResult(workdir=workdir, steps=[])

    def run(self, timeout: float) -> DemoResult:
        started = time.monotonic()
        slug = self._set_up()
        # Simulated time starts when the reader opens the form, not while we set up.
        self.runtime.clock = ScaledClock(SIM_START.astimezone(UTC), time.time(), self.speed)
        _sign_up_through_the_form(self.runtime, slug, self.outbox)
        # A pass every 40 simulated minutes: plenty inside a two-hour morning window.
        tick = 2400.0 / self.speed
        while len(self.result.sent) < len(self.result.steps):
            if time.monotonic() - started >= timeout:
                break
            self._one_pass()
            time.sleep(tick)
        self.result.real_seconds = time.monotonic() - started
        return self.result

    def _set_up(self) -> str:
        from nurture.migrations import upgrade
        from nurture.paths import templates_dir
        from nurture.sequences.editing import apply_spec
        from nurture.sequences.services import get_sequence, live_steps
        from nurture.sequences.spec import load_folder

        upgrade(self.runtime.settings.database_url)
        spec = load_folder(templates_dir() / "sequences" / DEFAULT_SLUG)
        with transaction() as s:
            apply_spec(s, spec)
            self.result.steps = [st.key for st in live_steps(s, get_sequence(s, spec.slug).id)]
        return spec.slug

    def _one_pass(self) -> None:
        from nurture.delivery.dispatch import dispatch_once
        from nurture.delivery.sending import send_batch

        if self.resume_at is not None and now() >= self.resume_at:
            _practice_resumes()
            self.resume_at, self.result.resumed = None, True
            self.on_note("the practice has answered Sam in person and resumes the series")
        dispatch_once(send_batch)  # type: ignore[arg-type]
        for sent in self._new_sends():
            self.result.sent.append(sent)
            self.on_sent(sent, self.result)
            if len(self.result.sent) == REPLY_AFTER < len(self.result.steps):
                self._reader_replies(sent)

    def _new_sends(self) -> list[SentEmail]:
        from nurture.delivery.models import Delivery, DeliveryStatus
        from nurture.models import Step

        with transaction() as s:
            rows = s.execute(
                select(Delivery.id, Delivery.sent_at, Delivery.message_id, Step.key,
                       Step.subject)
                .join(Step, Step.id == Delivery.step_id)
                .where(Delivery.status == DeliveryStatus.SENT)
                .order_by(Delivery.sent_at)
            ).all()  # fmt: skip
        new = [row for row in rows if row.id not in self.shown]
        self.shown.update(row.id for row in new)
        return [self._sent_email(row) for row in new]

    def _sent_email(self, row: Any) -> SentEmail:
        name = (row.message_id or "").strip("<>").split("@")[0]
        return SentEmail(
            step=row.key,
            subject=_subject_of(self.outbox / f"{name}.eml") or row.subject,
            sent_at=row.sent_at,
            eml=self.outbox / f"{name}.eml",
            html=self.outbox / f"{name}.html",
        )

    def _reader_replies(self, sent: SentEmail) -> None:
        _reader_replies(sent, self.workdir)
        self.result.paused = _series_paused()
        self.resume_at = now() + PAUSE_FOR
        self.on_note(
            "(simulated) Sam replies: “This is us exactly. Can we talk?” "
            "The inbox check reads the reply and pauses the series"
            if self.result.paused
            else "(simulated) Sam replies, but the series did not pause"
        )


def _subject_of(path: Path) -> str | None:
    if not path.exists():
        return None
    return str(message_from_bytes(path.read_bytes(), policy=default)["Subject"])


def remove(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
