"""`--executor local`: each point in a fresh `python -m lmjax.sweep.worker` subprocess, at most
`workers` at a time (1 by default: on a CPU one training run already uses every core).

A fresh process per point keeps XLA's compilation caches, device state and flags from leaking
between points. The worker claims the point itself, so several `lmjax sweep run` processes
(or hosts sharing the sweep directory) can work on one sweep. Interrupting the runner
(Ctrl-C) sends SIGTERM to running points, which save a checkpoint and record `interrupted`.
Killing the runner outright (SIGKILL, a lost session) does the same (`lmjax.sweep.lifetime`),
so no worker trains on as an orphan holding its claim.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from etils import epath

from lmjax.sweep import lifetime
from lmjax.sweep import status as status_lib
from lmjax.sweep.runner import RunOptions, next_ready, open_dirs, worker_args


class LocalExecutor:
    def __init__(self, workers: int = 1, poll_seconds: float = 0.5):
        self.workers = max(1, workers)
        self.poll_seconds = poll_seconds

    def run(self, dirs: list[epath.Path], options: RunOptions, on_done: Callable[[], None]) -> None:
        queue = list(dirs)
        running: dict[subprocess.Popen, epath.Path] = {}
        try:
            while queue or running:
                while len(running) < self.workers:
                    directory = next_ready(queue, [*queue, *running.values()])
                    if directory is None:
                        break
                    queue.remove(directory)
                    if open_dirs([directory], options):
                        running[self._start(directory, options)] = directory
                finished = [p for p in running if p.poll() is not None]
                for process in finished:
                    running.pop(process)
                    on_done()
                if not finished:
                    time.sleep(self.poll_seconds)
        finally:
            _stop(running)

    def _start(self, directory: epath.Path, options: RunOptions) -> subprocess.Popen:
        command = [sys.executable, "-m", "lmjax.sweep.worker", *worker_args(directory, options)]
        if "://" in os.fspath(directory):
            return subprocess.Popen(command, env=lifetime.worker_env())
        with open(directory / status_lib.LOG_FILE, "a") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=lifetime.worker_env())


def _stop(running: dict[subprocess.Popen, epath.Path]) -> None:
    """SIGTERM to points still running (they checkpoint and exit), then wait for them."""
    for process in running:
        process.terminate()
    for process in running:
        process.wait()
