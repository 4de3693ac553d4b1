"""The heavy pages (overview, this week, sequences) from a snapshot at most a minute old.

Their numbers come from nurture/reports.py, which walks every due send and every delivery:
seconds on a list of 100,000 readers, far over what a page may take. So each web process
keeps the last result of each and answers from it; once it is older than FRESH the next
request still gets it at once while one background thread counts again. Logging in starts
all of them, so the first page an operator opens is usually ready. An operator's own action
drops the snapshots of that process, so they see its effect on their next page. Each page
says when it was counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nurture.clock import now
from nurture.context import current, use
from nurture.db import reading
from nurture.runtime import Runtime

FRESH_SECONDS = 60.0


@dataclass
class _Entry:
    value: Any
    made_at: datetime  # by the nurture clock: what the page says
    made: float  # monotonic: how old it is
    refreshing: bool = False


class Snapshots:
    def __init__(self, runtime: Runtime, fresh: float = FRESH_SECONDS) -> None:
        self.runtime = runtime
        self.fresh = fresh
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._computing: dict[str, threading.Event] = {}

    def get(self, name: str, compute: Callable[[Any], Any]) -> tuple[Any, datetime]:
        """The snapshot `name` and when it was counted; `compute(session)` makes one."""
        with self._lock:
            entry = self._entries.get(name)
            stale = entry is not None and time.monotonic() - entry.made > self.fresh
            if entry is not None and stale and not entry.refreshing:
                entry.refreshing = True
                self._start(name, compute)
        if entry is not None:
            return entry.value, entry.made_at
        return self._wait_or_compute(name, compute)

    def warm(self, jobs: Mapping[str, Callable[[Any], Any]]) -> None:
        """Count these in the background now, unless a snapshot is there already."""
        with self._lock:
            for name, compute in jobs.items():
                if name not in self._entries and name not in self._computing:
                    self._start(name, compute)

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()

    def _start(self, name: str, compute: Callable[[Any], Any]) -> None:
        done = self._computing.setdefault(name, threading.Event())
        threading.Thread(
            target=self._run, args=(name, compute, done), daemon=True, name=f"snapshot-{name}"
        ).start()

    def _run(self, name: str, compute: Callable[[Any], Any], done: threading.Event) -> None:
        try:
            with use(self.runtime):
                self._store(name, self._count(compute))
        except Exception:
            with self._lock:  # the next request tries again
                entry = self._entries.get(name)
                if entry is not None:
                    entry.refreshing = False
        finally:
            with self._lock:
                self._computing.pop(name, None)
            done.set()

    def _wait_or_compute(self, name: str, compute: Callable[[Any], Any]) -> tuple[Any, datetime]:
        with self._lock:
            pending = self._computing.get(name)
        if pending is not None:
            pending.wait()
            with self._lock:
                entry = self._entries.get(name)
            if entry is not None:
                return entry.value, entry.made_at
        value = self._count(compute)
        return self._store(name, value)

    def _count(self, compute: Callable[[Any], Any]) -> tuple[Any, datetime]:
        with reading() as s:
            return compute(s), now()

    def _store(self, name: str, counted: tuple[Any, datetime]) -> tuple[Any, datetime]:
        value, made_at = counted
        with self._lock:
            self._entries[name] = _Entry(value, made_at, time.monotonic())
        return value, made_at


def snapshots() -> Snapshots:
    rt = current()
    return rt.kept("admin.snapshots", lambda: Snapshots(rt))
