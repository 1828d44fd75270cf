"""A local worker lives no longer than the runner that started it.

Killing `lmjax sweep run` outright (SIGKILL, a closed session, the OOM killer) runs no
handler, so without this its worker would train on as an orphan to the end of its point,
holding the claim. The runner names itself in the worker's environment; the worker, first
thing, asks Linux to send it SIGTERM when its parent dies (`PR_SET_PDEATHSIG`) and then
checks the parent is still the runner, in case it died before that request. SIGTERM makes
a training worker checkpoint and record `interrupted`, as Ctrl-C on the runner does. The
request is made by the worker itself after it started, not between fork and exec, where
running Python code in a multithreaded runner can deadlock.
"""

from __future__ import annotations

import os
import signal

from lmjax.parent_death import signal_on_parent_death

RUNNER_PID = "LMJAX_SWEEP_RUNNER_PID"


def worker_env() -> dict[str, str]:
    """The environment of a worker started by this process."""
    return {**os.environ, RUNNER_PID: str(os.getpid())}


def die_with_runner() -> None:
    """In a worker: SIGTERM to itself when the runner that started it dies (Linux), or at
    once if it already has. No-op for a worker started by hand or on another system."""
    runner = os.environ.get(RUNNER_PID)
    if runner:
        signal_on_parent_death(int(runner), signal.SIGTERM)
