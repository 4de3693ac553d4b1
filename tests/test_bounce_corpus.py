"""How well bounces are judged, against a corpus of real notices from many mail systems
(tests/fixtures/inbox/bounces: written here by Postfix and Exim, or in the documented shapes
of Office 365, Exchange, Gmail, G Suite, Yahoo, Outlook.com, Amazon SES, Lotus Notes and
Domino, qmail, Courier, OpenSMTPD, McAfee and Sendmail; labels.yaml says what each one is and
where it comes from).

Hard must mean the address is bad: at least 95% of hard bounces end the reader. Anything about
this message, this sender or this moment is soft: at least 95% of those keep them. The table
per system is printed (pytest -s) and carried by a failing assertion."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.context import current
from nurture.db import transaction
from nurture.delivery.dispatch import dispatch_once
from nurture.delivery.models import Delivery
from nurture.delivery.sending import send_batch
from nurture.feedback.classify import Kind, Notice, classify
from nurture.feedback.handling import apply
from nurture.mail import verp
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment, Subscriber

CORPUS = Path(__file__).parent / "fixtures" / "inbox" / "bounces"
LABELS: dict[str, dict[str, str]] = yaml.safe_load((CORPUS / "labels.yaml").read_text())
BOUNCES = "bounces@example.org"
PLACEHOLDER_TAG = "999999-ffffffffff"
PLACEHOLDER_ID = "<quick.one.00000000000000000000000000000000@example.org>"
HARD_RECALL = SOFT_KEPT = 0.95


def _system(name: str) -> str:
    return name.split("/")[0]


def _notices() -> dict[str, Notice]:
    return {name: classify((CORPUS / name).read_bytes(), BOUNCES) for name in LABELS}


def _table(notices: dict[str, Notice]) -> tuple[str, float, float]:
    """Per system: hard bounces that end the reader, soft ones (and delays) that keep them."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for name, notice in notices.items():
        row = counts[_system(name)]
        if LABELS[name]["kind"] == "hard":
            row[0] += 1
            row[1] += notice.kind == Kind.HARD_BOUNCE
        else:
            row[2] += 1
            row[3] += notice.kind != Kind.HARD_BOUNCE
    lines = [f"{'system':<10} {'hard -> bounced':>16} {'soft -> kept':>14}"]
    for system, (hard, ended, soft, kept) in sorted(counts.items()):
        lines.append(f"{system:<10} {ended:>9} of {hard:<4} {kept:>15} of {soft:<4}")
    hard, ended, soft, kept = (sum(row[i] for row in counts.values()) for i in range(4))
    lines.append(f"{'all':<10} {ended:>9} of {hard:<4} {kept:>15} of {soft:<4}")
    return "\n".join(lines), ended / hard, kept / soft


def test_the_corpus_is_labelled_and_broad() -> None:
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.eml")}
    assert files == set(LABELS)
    systems = {_system(name) for name in LABELS}
    assert len(LABELS) >= 60 and len(systems) >= 12
    for system in systems:
        kinds = {v["kind"] for k, v in LABELS.items() if _system(k) == system}
        assert {"hard", "soft"} <= kinds, system
    assert all(v["kind"] in {"hard", "soft", "delayed"} and v["source"] for v in LABELS.values())


def test_every_notice_names_the_delivery_it_is_about() -> None:
    """As real ones do: our VERP return path, or our Message-ID in what it returns."""
    for name in LABELS:
        raw = (CORPUS / name).read_bytes()
        assert f"bounces+{PLACEHOLDER_TAG}@".encode() in raw or PLACEHOLDER_ID.encode() in raw


def test_hard_bounces_end_the_reader_and_soft_ones_keep_them() -> None:
    notices = _notices()
    table, hard_recall, soft_kept = _table(notices)
    print(f"\n{table}")
    wrong = [
        f"{name}: {LABELS[name]['kind']} ({LABELS[name]['reason']}), judged {n.kind} {n.status}"
        for name, n in notices.items()
        if (LABELS[name]["kind"] == "hard") != (n.kind == Kind.HARD_BOUNCE)
    ]
    assert hard_recall >= HARD_RECALL and soft_kept >= SOFT_KEPT, "\n".join([table, *wrong])
    # A "still trying" warning is never a failure.
    delayed = [name for name, v in LABELS.items() if v["kind"] == "delayed"]
    assert all(notices[name].kind == Kind.DELAYED for name in delayed)


# --- end to end, on a real database ---------------------------------------------------------


def _sample() -> list[str]:
    """Two hard and two soft notices of each system (the first by name), and every delay."""
    picked: list[str] = []
    for system in sorted({_system(name) for name in LABELS}):
        names = sorted(k for k in LABELS if _system(k) == system)
        for kind, count in (("hard", 2), ("soft", 2), ("delayed", 9)):
            picked += [k for k in names if LABELS[k]["kind"] == kind][:count]
    return picked


def _readers(names: list[str]) -> dict[str, tuple[Delivery, str]]:
    """One confirmed reader per notice, each sent step one for real: their deliveries."""
    emails = {name: f"r{i}@example.net" for i, name in enumerate(names)}
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for email in emails.values():
            add_subscriber(s, email, seq, timezone="UTC", confirmed=True)
    ids: list[int] = []
    dispatch_once(ids.extend)
    assert len(send_batch(ids).sent) == len(names)
    with transaction() as s:
        rows = s.execute(
            select(Subscriber, Delivery)
            .join(Enrollment, Enrollment.subscriber_id == Subscriber.id)
            .join(Delivery, Delivery.enrollment_id == Enrollment.id)
        ).all()
        by_email = {sub.email: (d, sub.public_id) for sub, d in rows}
    return {name: by_email[email] for name, email in emails.items()}


def _as_sent_to(name: str, sent: tuple[Delivery, str]) -> bytes:
    d, person = sent
    raw = (CORPUS / name).read_bytes()
    tag = verp.tag(current().settings.secret, d.id, person)
    raw = raw.replace(PLACEHOLDER_TAG.encode(), tag.encode())
    return raw.replace(PLACEHOLDER_ID.encode(), (d.message_id or "").encode())


def test_a_sample_of_each_system_ends_or_keeps_the_reader_it_names(
    quick_sequence: str, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 3, 6, 9, 30, tzinfo=UTC))  # inside the quick sequence's window
    sample = _sample()
    deliveries = _readers(sample)
    with transaction() as s:
        for name in sample:
            notice = classify(_as_sent_to(name, deliveries[name]), BOUNCES)
            assert apply(s, notice, "imap"), name  # found by its tag or Message-ID alone
    with transaction() as s:
        for name, (d, _) in deliveries.items():
            status = s.get(Delivery, d.id).enrollment.subscriber.status  # type: ignore[union-attr]
            expected = "bounced" if LABELS[name]["kind"] == "hard" else "confirmed"
            assert status == expected, name
