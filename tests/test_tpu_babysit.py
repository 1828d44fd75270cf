"""`lmjax tpu babysit` against a scripted fake cloud and clock: preemption, a failed setup
re-run on the same slice, a hung slice found by its stale heartbeats and killed on every
worker, a queue that never grants the slice, capped exponential back-off, every attempt's
cause and the one-line summary. The kill line and the heartbeat files are checked for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types

import pytest

from lmjax.cloud import commands
from lmjax.cloud.babysit import BabysitPolicy, babysit, read_heartbeats, stop_command
from lmjax.cloud.launcher import Result
from lmjax.cloud.spec import TpuSpec, TpuTarget
from lmjax.runs.layout import RunLayout
from lmjax.train.callbacks import Heartbeat

TARGET = TpuTarget("my-slice", "us-east5-a")
SPEC = TpuSpec(TARGET, "v5p-64", "spot")
RUN = commands.run_command(TARGET, ["lmjax", "train"], "r", "gs://b")
SETUP = [commands.ssh_command(TARGET, "install lmjax")]
STOP = stop_command(TARGET, "r")


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


class FakeCloud:
    """A queued resource that provisions after `provision_polls` state checks; setups exit
    with `setup_codes` (then 0); runs follow `outcomes`: "ok" (exit 0), "fail" (exit 1, slice
    healthy), "preempt" (the slice is PREEMPTED under the command, which exits 255 as ssh
    does), "hang" (never exits; worker 1's heartbeat stops 5 s in) or "slow" (exits 0 after
    five polls while both workers beat from the second on)."""

    def __init__(self, clock, state="", outcomes=(), provision_polls=2, create_codes=(),
                 setup_codes=()):
        self.clock, self.state, self.outcomes = clock, state, list(outcomes)
        self.provision_polls, self.create_codes = provision_polls, list(create_codes)
        self.setup_codes = list(setup_codes)
        self.calls: list[str] = []
        self.polls = 0
        self.beats: dict[str, float] = {}

    def __call__(self, argv, capture=False):
        kind = self._kind(argv)
        self.calls.append(kind)
        if kind == "state":
            self.polls += 1
            if self.state == "WAITING_FOR_RESOURCES" and self.polls > self.provision_polls:
                self.state = "ACTIVE"
            return Result(0, self.state + "\n") if self.state else Result(1)
        if kind == "create":
            code = self.create_codes.pop(0) if self.create_codes else 0
            if code == 0:
                self.state, self.polls = "WAITING_FOR_RESOURCES", 0
            return Result(code)
        if kind == "delete":
            self.state = ""
        if kind == "setup":
            return Result(self.setup_codes.pop(0) if self.setup_codes else 0)
        return Result(0)

    def start(self, argv):
        assert list(argv) == RUN  # the same run id and directory every time: reruns resume
        self.calls.append("run")
        return FakeProcess(self, self.outcomes.pop(0))

    def heartbeats(self):
        return dict(self.beats)

    @staticmethod
    def _kind(argv):
        if "queued-resources" in argv:
            verb = argv[argv.index("queued-resources") + 1]
            return "state" if verb == "describe" else verb
        return "stop" if argv == STOP else "setup"


class FakeProcess:
    def __init__(self, cloud, outcome):
        self.cloud, self.outcome, self.polls, self.killed = cloud, outcome, 0, False
        self.started = cloud.clock()
        if outcome == "preempt":
            cloud.state = "PREEMPTED"

    def poll(self):
        self.polls += 1
        now = self.cloud.clock()
        if self.outcome == "hang":
            self.cloud.beats = {"0": now, "1": self.started + 5}
            return -9 if self.killed else None
        if self.outcome == "slow":
            if self.polls > 1:  # the first check still sees the previous attempt's beats
                self.cloud.beats = {"0": now, "1": now}
            return 0 if self.polls > 5 else None
        return {"ok": 0, "fail": 1, "preempt": 255}[self.outcome]

    def kill(self):
        self.killed = True
        self.cloud.calls.append("kill")

    def wait(self):
        return -9


def run_babysit(clock, cloud, **policy):
    return babysit(SPEC, SETUP, RUN, cloud, BabysitPolicy(**{"poll_seconds": 10, **policy}),
                   start=cloud.start, heartbeats=cloud.heartbeats, stop=STOP,
                   sleep=clock.sleep, clock=clock, log=lambda line: None)


@pytest.fixture
def clock():
    return FakeClock()


def test_a_missing_slice_is_created_set_up_and_run(clock):
    cloud = FakeCloud(clock, outcomes=["ok"])
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "create", "state", "state", "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (True, 1, 1)
    assert clock.sleeps == [10, 10]
    assert outcome.summary == "succeeded on attempt 1; 1 slice(s) created; failed attempts: none"


def test_an_existing_slice_is_set_up_once_before_its_first_run(clock):
    # Whether a slice babysit did not create was set up is unknown: setup is idempotent, so
    # it runs; after a plain command failure on the same slice it is not repeated.
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["fail", "ok"])
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "setup", "run", "state", "state", "run"]
    assert outcome.events[0] == "attempt 1 failed: command failed: it exited with 1"


def test_a_preempted_slice_is_recreated_set_up_again_and_the_same_command_rerun(clock):
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["preempt", "ok"], provision_polls=0)
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "setup", "run", "state", "state", "delete", "create",
                           "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (True, 2, 1)
    assert outcome.events[0] == ("attempt 1 failed: slice lost: the command exited with 255 "
                                 "and the slice is PREEMPTED")
    assert clock.sleeps == [60.0]
    assert outcome.summary.endswith("1 slice(s) created; failed attempts: slice lost x1")


@pytest.mark.parametrize("code", [1, 130])  # a pip failure; an interrupted (SIGINT) setup
def test_a_failed_setup_is_rerun_on_the_same_slice(clock, code):
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["ok"], setup_codes=[code])
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "setup", "state", "setup", "run"]
    assert "create" not in cloud.calls and outcome.succeeded
    assert outcome.events[0] == (f"attempt 1 failed: setup failed: `gcloud compute tpus tpu-vm "
                                 f"ssh my-slice --zone us-east5-a --worker=all --command "
                                 f"'install lmjax'` exited with {code}")
    assert outcome.summary == ("succeeded on attempt 2; 0 slice(s) created; "
                               "failed attempts: setup failed x1")


def test_a_stale_heartbeat_kills_the_command_on_every_worker_and_restarts_it(clock):
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["hang", "ok"])
    outcome = run_babysit(clock, cloud, stale_after_seconds=300)
    assert cloud.calls == ["state", "setup", "run", "kill", "stop", "state", "run"]
    # Worker 1's last heartbeat came 5 s after the start; polled every 10 s, its silence
    # first exceeds 300 s at the 31st poll, 310 s after the start.
    assert outcome.events[0] == ("attempt 1 failed: stale heartbeat: worker 1 made no progress "
                                 "for 305 s; killed the command on every worker")
    assert clock.sleeps[:31] == [10] * 31 and outcome.succeeded


def test_a_long_run_whose_workers_keep_beating_is_left_alone(clock):
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["slow"])
    cloud.beats = {"0": 0.0, "1": 0.0}  # a previous attempt's: older than the limit
    outcome = run_babysit(clock, cloud, stale_after_seconds=15)
    assert cloud.calls == ["state", "setup", "run"] and outcome.succeeded


def test_it_gives_up_after_max_attempts_with_capped_backoff(clock):
    cloud = FakeCloud(clock, state="ACTIVE", outcomes=["fail"] * 5)
    outcome = run_babysit(clock, cloud, max_attempts=5, backoff_seconds=60, max_backoff_seconds=200)
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (False, 5, 0)
    assert cloud.calls.count("run") == 5 and "create" not in cloud.calls
    assert clock.sleeps == [60, 120, 200, 200]
    assert outcome.summary == ("gave up after 5 attempts; 0 slice(s) created; "
                               "failed attempts: command failed x5")
    assert outcome.events[-1] == outcome.summary


def test_a_queued_resource_never_active_stops_with_a_message(clock):
    cloud = FakeCloud(clock, outcomes=["ok"], provision_polls=10**9)
    outcome = run_babysit(clock, cloud, max_attempts=3, max_wait_seconds=100)
    assert (outcome.succeeded, outcome.attempts) == (False, 1)
    assert "run" not in cloud.calls and cloud.calls.count("create") == 1
    assert outcome.summary.startswith("stopped: never active: slice my-slice is still "
                                      "WAITING_FOR_RESOURCES after 100 s; try another zone")
    assert "\n" not in outcome.summary


@pytest.mark.parametrize("dead", ["FAILED", "SUSPENDED", "PREEMPTED"])
def test_a_dead_slice_is_replaced_before_running(clock, dead):
    cloud = FakeCloud(clock, state=dead, outcomes=["ok"], provision_polls=0)
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "delete", "create", "state", "setup", "run"]
    assert outcome.succeeded


def test_a_failed_create_is_retried(clock):
    cloud = FakeCloud(clock, outcomes=["ok"], provision_polls=0, create_codes=[1, 0])
    outcome = run_babysit(clock, cloud)
    assert cloud.calls == ["state", "create", "state", "create", "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts) == (True, 2)


def test_the_stop_line_kills_exactly_the_runs_processes():
    line = STOP[-1]
    assert STOP[:-1] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-slice", "--zone",
                         "us-east5-a", "--worker=all", "--command"]
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={**os.environ, "LMJAX_RUN_ID": "r"})
    other = subprocess.Popen(sleep, env={**os.environ, "LMJAX_RUN_ID": "r2"})
    try:
        assert subprocess.run(["bash", "-c", line], timeout=60).returncode == 0
        assert ours.wait(timeout=10) == -9
        assert other.poll() is None
    finally:
        for process in (ours, other):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_every_process_heartbeat_is_read_back(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    before = time.time()
    beat = Heartbeat()
    beat.on_start(types.SimpleNamespace(layout=layout, start_step=4))
    beat.on_log(6, {})
    written = json.loads((tmp_path / "run" / "heartbeats" / "process-0.json").read_text())
    assert written["step"] == 6 and written["pid"] == os.getpid()
    (tmp_path / "run" / "heartbeats" / "process-1.json").write_text('{"time": 12.5}')
    (tmp_path / "run" / "heartbeats" / "process-2.json").write_text('{"ti')  # half-written
    beats = read_heartbeats(str(tmp_path / "run"))()
    assert set(beats) == {"0", "1"} and beats["1"] == 12.5
    assert before <= beats["0"] <= time.time()
