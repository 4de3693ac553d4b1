"""`nurture run`'s processes end with their parent (issue 19): killing it, even with SIGKILL,
left gunicorn and a Celery worker with its beat running as orphans (parent pid 1), and beat
kept asking for dispatch passes; after a restart there were two.

Real processes, found through /proc: `nurture run` on the embedded broker (a thread pool,
beat forked by the worker) and on Redis (a prefork pool as well)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT
from tests.support import free_port, new_queue, wait_until

pytestmark = [
    pytest.mark.slow,
    # Elsewhere there is no PR_SET_PDEATHSIG (nor /proc); CI runs on Linux, never skips it.
    pytest.mark.skipif(not sys.platform.startswith("linux") and not IN_CI, reason="Linux only"),
]
# Stopping takes a warm shutdown of Celery (a few seconds when idle): within this, all gone.
ENDED_WITHIN = 15


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "(command name)", which may hold spaces
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every process below `root`: pid -> its start time (so a reused pid is not mistaken
    for it)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = (stat[0], stat[2])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def alive(procs: dict[int, str]) -> dict[int, str]:
    """Those still running (a zombie has ended; only its parent has not read its status)."""
    live = {}
    for pid, started in procs.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == started and stat[1] != "Z":
            live[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return live


@pytest.fixture(params=["embedded", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    env |= {"PYTHONPATH": str(ROOT), "NURTURE_DISPATCH_INTERVAL": "1"}
    if request.param == "redis":
        env |= {
            "NURTURE_BROKER_URL": request.getfixturevalue("broker"),
            "NURTURE_QUEUE": new_queue(),
        }
    return env


@pytest.fixture
def running(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`nurture run`, up and answering, with every process it starts already there."""
    port = free_port()
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nurture.cli", "run", "--port", str(port), "--concurrency", "2"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    seen: dict[int, str] = {}

    def complete() -> bool:
        seen.update(descendants(proc.pid))
        # gunicorn and its worker; the Celery worker, its beat and (prefork) two pool processes
        want = 4 if "NURTURE_BROKER_URL" not in env else 6
        return len(alive(seen)) >= want and _healthy(port)

    try:
        assert wait_until(complete, timeout=90), (tmp_path / "run.log").read_text()[-3000:]
        yield proc, port
    finally:
        # Whatever the test saw, nothing it started outlives it: each by its own pid.
        seen.update(descendants(proc.pid))
        proc.kill()
        for pid in alive(seen):  # checked by start time: never a stranger with a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        log.close()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_kill_9_of_nurture_run_leaves_no_process_behind(
    running: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = running
    children = descendants(proc.pid)
    proc.kill()  # SIGKILL: no handler of ours runs
    proc.wait(10)
    left = wait_until(lambda: not alive(children), timeout=ENDED_WITHIN)
    assert left, f"still running after nurture run was killed: {alive(children)}"
    assert not _healthy(port)


def test_kill_9_of_the_celery_worker_takes_its_beat_with_it(
    running: tuple[subprocess.Popen[bytes], int],
) -> None:
    """Celery's own children (the embedded beat, the pool) end with it; `nurture run` sees
    its worker gone and stops the rest."""
    proc, _ = running
    children = descendants(proc.pid)
    celery = next(pid for pid, cmd in alive(children).items() if " celery " in cmd)
    os.kill(celery, signal.SIGKILL)
    assert wait_until(lambda: not alive(children), timeout=ENDED_WITHIN), alive(children)
    assert proc.wait(ENDED_WITHIN) == 1  # a part of it died: not a clean stop
