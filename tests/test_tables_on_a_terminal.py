"""Tables as a person sees them: the real `nurture` command on a real pty, 80 columns wide.

A table too wide for the terminal used to fold cells mid-word (`confirme│d`,
`you@exam│ple.com`, a step key in three pieces). Now a word is kept whole, shortened with
"…" only when it alone is wider than its column, or the rows are stacked."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from tests.cli_helpers import drain, run, sequence_copy

ROOT = Path(__file__).resolve().parents[1]
NURTURE = Path(sys.executable).with_name("nurture")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")

SLUG = "partner-refuses-therapy"
KEYS = ["welcome-when-they-say-no", "listening-without-fixing", "three", "four"]
PEOPLE = [
    "alexandra.montgomery-whitfield@example.com",
    "you@example.com",
    "sam.o-donnell@counselling.example.org",
]
WORDS = {SLUG, *KEYS, *PEOPLE, "confirmed", "pending", "active", "failed", "unsubscribed"}


def on_pty(*args: str, columns: int = 80) -> str:
    """`nurture ARGS` on a pty of that width, as a terminal shows it (colours taken out)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env |= {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    proc = subprocess.Popen([str(NURTURE), *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command ended and closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
    return _ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def split_words(screen: str) -> list[str]:
    """Pieces of a known word that are not the word, nor a shortened "prefix…"."""
    pieces = re.split(r"[\s│┃┏┓┗┛┡┩└┘┌┐━─┳┻╇┼┬┴]+", screen)
    return [
        p for p in pieces if len(p) >= 4 and p not in WORDS and any(w.startswith(p) for w in WORDS)
    ]


@pytest.fixture
def practice(
    db: str, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FrozenClock:
    folder = sequence_copy(tmp_path)
    spec = (folder / "sequence.yaml").read_text().replace("slug: quick", f"slug: {SLUG}")
    for old, new in zip(["one", "two"], KEYS, strict=False):
        spec = spec.replace(f"key: {old},", f"key: {new},")
    (folder / "sequence.yaml").write_text(spec)
    assert run("sequences", "apply", str(folder)).code == 0
    for email in PEOPLE:
        assert run("subscribers", "add", email, "--sequence", SLUG, "--confirmed").code == 0
    args = ["subscribers", "add", "pending.person@example.com", "--sequence", SLUG]
    assert run(*args, "--name", "Alexandra-Marie").code == 0
    assert drain() == 3
    with transaction() as s:
        d = s.scalars(select(Delivery).order_by(Delivery.id)).first()
        assert d is not None
        d.status, d.error = DeliveryStatus.FAILED, "550 5.1.1 mailbox unavailable: user unknown"
    run("subscribers", "unsubscribe", PEOPLE[2])
    # The command runs in its own process: it reads the test's time through NURTURE_CLOCK.
    monkeypatch.setenv("NURTURE_CLOCK", f"{clock.now().isoformat()}@{time.time()}x1")
    monkeypatch.setenv("NURTURE_TIMEZONE", "America/New_York")
    return clock


@pytest.mark.parametrize(
    "args",
    [
        ("stats",),
        ("schedule",),
        ("schedule", "--within", "1d"),
        ("subscribers", "list"),
        ("subscribers", "show", PEOPLE[0]),
        ("deliveries", "list"),
        ("deliveries", "list", "--status", "failed"),
    ],
    ids=" ".join,
)
def test_tables_fit_80_columns_without_splitting_a_word(
    practice: FrozenClock, args: tuple[str, ...]
) -> None:
    screen = on_pty(*args)
    assert screen.strip(), args
    too_wide = [line for line in screen.splitlines() if cell_len(line) > 80]
    assert not too_wide, screen
    assert not split_words(screen), screen
    assert "Z " not in screen and not re.search(r"\d\dZ", screen), screen  # no UTC "14:00Z"


def test_each_table_shows_what_matters_at_80_columns(practice: FrozenClock) -> None:
    listing = on_pty("subscribers", "list")
    assert "you@example.com" in listing and "confirmed" in listing
    assert "times in America/New_York" in listing
    failed = on_pty("deliveries", "list", "--status", "failed")
    assert "550" in failed and "failed" in failed
    stats = on_pty("stats")
    assert "signed up" in stats and "share" in stats
    assert "—" in stats and "clicks are not tracked" in stats
    schedule = on_pty("schedule")
    assert "Fri 6 Mar 09:01" in schedule  # per day, with the time of the day's sends
