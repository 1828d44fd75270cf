"""The prepare's pool of tokenizing processes, which never outlives the process that made it.

A pool worker waits on its parent's queue; if the parent is killed (`kill -9`, the OOM
killer) nothing tells it, and it would go on tokenizing and writing into the cache. So each
worker asks Linux to kill it when its parent dies (prctl PR_SET_PDEATHSIG), or elsewhere
watches its parent's pid; the semaphores' resource tracker then sees its pipe close and
exits too.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time

from lmjax.parent_death import signal_on_parent_death

WATCH_SECONDS = 1.0


def run(function, jobs: list, workers: int):
    """function over jobs, in order: in worker processes when there is more than one of each."""
    if workers < 2 or len(jobs) < 2:
        yield from map(function, jobs)
        return
    context = multiprocessing.get_context("spawn")  # never fork a threaded JAX process
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                                initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from pool.map(function, jobs)


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when process `parent` ends."""
    if not signal_on_parent_death(parent, signal.SIGKILL):
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="watch-parent").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
