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
from zoneinfo import ZoneInfo

from sqlalchemy import select

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


def _sign_up_through_the_form(slug: str, outbox: Path) -> None:
    from nurture.subscribers.confirmation import send_confirmation
    from nurture.web.app import create_app

    app = create_app(ENQUEUE_CONFIRMATION=send_confirmation, RATELIMIT_ENABLED=False)
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
    from nurture.mail.inbox import FolderSource, process

    inbox = workdir / "inbox"
    _reply_to(sent, inbox)
    with FolderSource(inbox) as source:
        process(source, origin="demo")


def _practice_resumes() -> None:
    from nurture.db import transaction
    from nurture.subscribers.holding import resume
    from nurture.subscribers.services import get_subscriber

    with transaction() as s:
        resume(s, get_subscriber(s, READER), by="demo")


def _series_paused() -> bool:
    from nurture.db import transaction
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
    from nurture import clock as clock_mod
    from nurture.clock import ScaledClock
    from nurture.config import reset_settings
    from nurture.db import transaction
    from nurture.delivery.dispatch import dispatch_once
    from nurture.delivery.models import Delivery, DeliveryStatus
    from nurture.delivery.sending import send_batch
    from nurture.migrations import upgrade
    from nurture.models import Step
    from nurture.paths import templates_dir
    from nurture.sequences.editing import apply_spec
    from nurture.sequences.services import get_sequence, live_steps
    from nurture.sequences.spec import load_folder

    workdir = workdir or Path(tempfile.mkdtemp(prefix="nurture-demo-"))
    outbox = workdir / "outbox"
    saved = _isolate(workdir)
    reset_settings()
    speed = 86400.0 / day_seconds
    started = time.monotonic()
    try:
        upgrade()
        spec = load_folder(templates_dir() / "sequences" / DEFAULT_SLUG)
        with transaction() as s:
            apply_spec(s, spec)
            steps = [st.key for st in live_steps(s, get_sequence(s, spec.slug).id)]
        result = DemoResult(workdir=workdir, steps=steps)
        # Simulated time starts when the reader opens the form, not while we set up.
        clock_mod.set_clock(ScaledClock(SIM_START.astimezone(UTC), time.time(), speed))
        _sign_up_through_the_form(spec.slug, outbox)
        shown: set[int] = set()
        resume_at: datetime | None = None
        # A pass every 40 simulated minutes: plenty inside a two-hour morning window.
        tick = 2400.0 / speed
        while len(result.sent) < len(steps) and time.monotonic() - started < timeout:
            if resume_at is not None and clock_mod.now() >= resume_at:
                _practice_resumes()
                resume_at, result.resumed = None, True
                on_note("the practice has answered Sam in person and resumes the series")
            dispatch_once(send_batch)  # type: ignore[arg-type]
            with transaction() as s:
                rows = s.execute(
                    select(Delivery.id, Delivery.sent_at, Delivery.message_id, Step.key,
                           Step.subject)
                    .join(Step, Step.id == Delivery.step_id)
                    .where(Delivery.status == DeliveryStatus.SENT)
                    .order_by(Delivery.sent_at)
                ).all()  # fmt: skip
            for row in rows:
                if row.id in shown:
                    continue
                shown.add(row.id)
                name = (row.message_id or "").strip("<>").split("@")[0]
                sent = SentEmail(
                    step=row.key,
                    subject=_subject_of(outbox / f"{name}.eml") or row.subject,
                    sent_at=row.sent_at,
                    eml=outbox / f"{name}.eml",
                    html=outbox / f"{name}.html",
                )
                result.sent.append(sent)
                on_sent(sent, result)
                if len(result.sent) == REPLY_AFTER < len(steps):
                    _reader_replies(sent, workdir)
                    result.paused = _series_paused()
                    resume_at = clock_mod.now() + PAUSE_FOR
                    on_note(
                        "(simulated) Sam replies: “This is us exactly. Can we talk?” "
                        "The inbox check reads the reply and pauses the series"
                        if result.paused
                        else "(simulated) Sam replies, but the series did not pause"
                    )
            time.sleep(tick)
        result.real_seconds = time.monotonic() - started
        return result
    finally:
        clock_mod.reset_clock()
        _restore(saved)
        reset_settings()


def _subject_of(path: Path) -> str | None:
    if not path.exists():
        return None
    return str(message_from_bytes(path.read_bytes(), policy=default)["Subject"])


def remove(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
