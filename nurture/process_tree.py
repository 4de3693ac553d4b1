"""Children end with their parent.

`nurture run` starts web (gunicorn), and a Celery worker that runs beat in a process of its
own. A child that outlives its parent keeps working unseen: an orphaned beat goes on asking
for dispatch passes, and after a restart there are two. Whatever ends the parent, Ctrl-C,
SIGTERM or a SIGKILL that no handler sees, must end every process below it:

- Each child asks the kernel for SIGTERM when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`),
  and stops as it stops on SIGTERM: gunicorn lets its requests finish, Celery its tasks.
- Below them: gunicorn's workers leave when their master is gone (they watch their parent
  pid), Celery's pool processes get SIGKILL from the kernel the same way (Celery asks for it
  in every pool process), and the embedded beat asks for SIGTERM here, on beat_embedded_init.
- `nurture run` starts each child in a process group of its own and, when a child will not
  stop in time, kills its whole group, so nothing below it is left behind either.

Outside Linux there is no such call: stopping `nurture run` with Ctrl-C or SIGTERM still stops
everything, a SIGKILL does not.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl: Callable[..., int] = libc.prctl
    return prctl


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux only)."""
    prctl = _prctl()
    if prctl is not None and prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def child_of_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when this process dies.

    libc is loaded here, in the parent: the function runs in the child between fork and
    exec, where as little as possible should happen."""
    prctl = _prctl()
    parent = os.getpid()

    def in_the_child() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return in_the_child
