"""A child process asks to end when the process that started it dies.

Killing a parent outright (SIGKILL, the OOM killer, a closed session) runs no handler of its,
so its children would go on as orphans: a sweep worker training to the end of its point, a
prepare's pool worker writing into the cache. Linux delivers a chosen signal to a child when
its parent dies if the child asks (`prctl(PR_SET_PDEATHSIG)`); the request is made by the
child itself, after it started, and it then checks that its parent is still the one it
expects, in case the parent died before the request was in place.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def signal_on_parent_death(parent: int, signal_number: int) -> bool:
    """Asks Linux for `signal_number` when the parent dies, and sends it at once if the parent
    is no longer `parent`; False where the request cannot be made (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), signal_number)
    return True
