"""The prepare's tokenizing processes die with it: after `kill -9` of the process that runs the
pool, its workers and the resource tracker are gone within seconds (Linux /proc)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WAIT_SECONDS = 15

HELPER = textwrap.dedent("""
    import os, pathlib, time

    def hold(directory):
        pathlib.Path(directory, str(os.getpid())).touch()  # this worker is at work
        time.sleep(300)
""")
DRIVER = textwrap.dedent("""
    import sys
    from lmjax.data import workers
    import helper
    list(workers.run(helper.hold, [sys.argv[1]] * 2, 2))
""")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return found


def poll(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_and_resource_tracker_exit_after_kill_9_of_their_parent(tmp_path):
    (tmp_path / "helper.py").write_text(HELPER)
    started = tmp_path / "started"
    started.mkdir()
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ""), str(Path.cwd())])
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(started)],
                              env={**os.environ, "PYTHONPATH": path})
    pids: list[int] = []
    try:
        assert poll(lambda: len(list(started.iterdir())) == 2, 120), "the workers never started"
        pids = children(driver.pid)
        workers = {int(p.name) for p in started.iterdir()}
        assert workers < set(pids)  # and the resource tracker
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(10)
        assert poll(lambda: not any(map(alive, pids)), WAIT_SECONDS), \
            f"still alive {WAIT_SECONDS} s after kill -9: {[p for p in pids if alive(p)]}"
    finally:
        for pid in [driver.pid, *pids]:  # only what this test started
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
