"""`sequences apply` plans while only reading (on SQLite nobody waits for the planning) and
applies under the write lock: a reader whose row changed in between (a send, a claim) is
placed again from their fresh row, never moved by a stale plan."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FrozenClock
from nurture.db import reading, transaction
from nurture.sequences.editing import apply_plan, plan_edit
from nurture.sequences.services import get_sequence
from nurture.sequences.spec import load_folder
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Enrollment
from tests.conftest import FIXTURES
from tests.web_support import drain


def _slower_step_two(tmp_path: Path) -> Path:
    folder = tmp_path / "quick"
    shutil.copytree(FIXTURES / "sequences" / "quick", folder)
    spec = folder / "sequence.yaml"
    text = spec.read_text().replace("{key: two, delay: 1m", "{key: two, delay: 3m")
    spec.write_text(text)
    return folder


def test_a_send_between_planning_and_applying_is_placed_again(
    quick_sequence: str, clock: FrozenClock, outbox: list, tmp_path: Path
) -> None:
    with transaction() as s:
        seq = get_sequence(s, "quick")
        for email in ("ann@example.com", "bob@example.com"):
            add_subscriber(s, email, seq, confirmed=True)
    spec = load_folder(_slower_step_two(tmp_path))
    with reading() as s:
        plan = plan_edit(s, spec)  # both readers are still before step one
    assert plan.delays == {"two": (60, 180)}
    assert len(drain()) == 2  # meanwhile step one goes out: both now wait for step two
    with transaction() as s:
        apply_plan(s, spec, plan)
    with reading() as s:
        rows = list(s.scalars(select(Enrollment)))
        assert {e.next_step.key for e in rows if e.next_step} == {"two"}
        # Re-timed with the new delay from their own send, as the edit promises.
        assert {e.next_due_at - e.last_sent_at for e in rows} == {timedelta(minutes=3)}
