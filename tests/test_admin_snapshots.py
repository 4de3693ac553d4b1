"""The heavy pages' snapshots: served at once, counted again in the background once stale,
dropped by an operator's action; the page says when it was counted."""

from __future__ import annotations

import threading
import time
from typing import Any

from nurture.admin.snapshots import Snapshots
from nurture.context import current


def test_stale_snapshot_is_served_while_it_is_counted_again(db: str) -> None:
    calls: list[int] = []
    gate = threading.Event()

    def compute(_: Any) -> int:
        calls.append(1)
        if len(calls) > 1:
            gate.wait(5)  # a slow recount
        return len(calls)

    snaps = Snapshots(current(), fresh=0.05)
    assert snaps.get("x", compute)[0] == 1  # the first is counted in the request
    time.sleep(0.1)
    started = time.perf_counter()
    assert snaps.get("x", compute)[0] == 1  # stale: still answered at once
    assert time.perf_counter() - started < 0.5
    for _ in range(100):
        if len(calls) == 2:
            break
        time.sleep(0.01)
    for _ in range(3):
        assert snaps.get("x", compute)[0] == 1
    assert len(calls) == 2  # one recount at a time
    gate.set()
    for _ in range(100):
        if snaps.get("x", compute)[0] >= 2:
            break
        time.sleep(0.02)
    assert snaps.get("x", compute)[0] >= 2


def test_warm_counts_ahead_and_forget_drops(db: str) -> None:
    calls: list[str] = []

    def compute(_: Any) -> str:
        calls.append("c")
        return "counted"

    snaps = Snapshots(current())
    snaps.warm({"y": compute})
    assert snaps.get("y", compute)[0] == "counted"  # waits for the warm-up, not a second count
    assert calls == ["c"]
    snaps.forget()
    snaps.get("y", compute)
    assert calls == ["c", "c"]
