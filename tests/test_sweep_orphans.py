"""A killed sweep runner takes its worker with it: a real runner process starts a real worker
on a point that would train for a long time, is SIGKILLed (no handler of its own can run),
and the worker must be gone within seconds instead of training on as an orphan."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNER = """
import sys, time
from lmjax.sweep import load_spec, points
from lmjax.sweep.executors.local import LocalExecutor
from lmjax.sweep.runner import RunOptions, prepare

spec = load_spec(sys.argv[1])
worker = LocalExecutor()._start(prepare(spec, points(spec))[0], RunOptions())
print(worker.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, not yet reaped by its new parent) is dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_worker_dies_with_its_killed_runner(tmp_path):
    sweep = tmp_path / "long.yaml"
    sweep.write_text(f"base: gpt_tiny\noutput_dir: {tmp_path / 'out'}\noverrides: {{train.steps: 100000}}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(sweep)], stdout=subprocess.PIPE,
                              text=True, env=env)
    worker = None
    try:
        worker = int(runner.stdout.readline())
        time.sleep(2)  # the worker is under way (importing, claiming, preparing data)
        assert _alive(worker)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its killed runner"
    finally:
        runner.kill()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
