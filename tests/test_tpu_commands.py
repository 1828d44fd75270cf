"""`lmjax tpu`: the gcloud command lines built from a slice spec, compared with the lines one
would type by hand (Google's queued-resources and tpu-vm ssh/scp syntax), the remote line run
through a real shell, babysit's recreate-and-rerun loop against a fake cloud and clock, and the
one-line errors. No cloud and no gcloud are needed."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from lmjax.cli import main
from lmjax.cloud import commands
from lmjax.cloud.babysit import BabysitPolicy, babysit
from lmjax.cloud.launcher import Result
from lmjax.cloud.spec import TpuSpec, TpuTarget
from lmjax.errors import ConfigError

ZONE = "us-east5-a"


def spec(accelerator_type="v5p-64", provisioning="on-demand", runtime="", project=""):
    return TpuSpec(TpuTarget("my-slice", ZONE, project), accelerator_type, provisioning, runtime)


@pytest.fixture(autouse=True)
def _no_gcloud_defaults(monkeypatch):
    for name in ("CLOUDSDK_COMPUTE_ZONE", "CLOUDSDK_CORE_PROJECT", "LMJAX_OUTPUT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("slice_spec, expected", [
    (spec("v5p-64", "spot"),
     "gcloud compute tpus queued-resources create my-slice --node-id my-slice --zone us-east5-a "
     "--accelerator-type v5p-64 --runtime-version v2-alpha-tpuv5 --spot"),
    (spec("v4-32", "reserved", project="my-proj"),
     "gcloud compute tpus queued-resources create my-slice --node-id my-slice --zone us-east5-a "
     "--project my-proj --accelerator-type v4-32 --runtime-version tpu-ubuntu2204-base --reserved"),
    (spec("v5litepod-16"),
     "gcloud compute tpus queued-resources create my-slice --node-id my-slice --zone us-east5-a "
     "--accelerator-type v5litepod-16 --runtime-version v2-alpha-tpuv5-lite"),
    (spec("v6e-8", "spot", runtime="v2-alpha-tpuv6e-custom"),
     "gcloud compute tpus queued-resources create my-slice --node-id my-slice --zone us-east5-a "
     "--accelerator-type v6e-8 --runtime-version v2-alpha-tpuv6e-custom --spot"),
])
def test_create_command_lines(slice_spec, expected):
    assert shlex.join(commands.create_command(slice_spec)) == expected


@pytest.mark.parametrize("accelerator_type, runtime, hosts, chips", [
    ("v4-8", "tpu-ubuntu2204-base", 1, 4),
    ("v4-32", "tpu-ubuntu2204-base", 4, 16),
    ("v5litepod-8", "v2-alpha-tpuv5-lite", 1, 8),
    ("v5litepod-16", "v2-alpha-tpuv5-lite", 4, 16),
    ("v5p-8", "v2-alpha-tpuv5", 1, 4),
    ("v5p-64", "v2-alpha-tpuv5", 8, 32),
    ("v5p-256", "v2-alpha-tpuv5", 32, 128),
    ("v6e-4", "v2-alpha-tpuv6e", 1, 4),
    ("v6e-256", "v2-alpha-tpuv6e", 64, 256),
    ("v3-32", "tpu-ubuntu2204-base", 4, 16),
])
def test_runtime_defaults_and_host_counts(accelerator_type, runtime, hosts, chips):
    """Published slice shapes: v4/v5p count TensorCores (2 per chip, 4 chips per host), v5e and
    v6e count chips (4 per host beyond 8)."""
    slice_spec = spec(accelerator_type)
    assert (slice_spec.runtime, slice_spec.hosts, slice_spec.chips) == (runtime, hosts, chips)


def test_addressing_commands():
    target = TpuTarget("my-slice", ZONE, "p")
    assert shlex.join(commands.state_command(target)) == (
        "gcloud compute tpus queued-resources describe my-slice --zone us-east5-a --project p "
        "'--format=value(state.state)'")
    assert shlex.join(commands.delete_command(target)) == (
        "gcloud compute tpus queued-resources delete my-slice --zone us-east5-a --project p "
        "--force --quiet")
    assert shlex.join(commands.status_command(None, ZONE)) == (
        "gcloud compute tpus queued-resources list --zone us-east5-a")
    assert shlex.join(commands.ssh_command(target, "hostname")) == (
        "gcloud compute tpus tpu-vm ssh my-slice --zone us-east5-a --project p --worker=all "
        "--command hostname")


def test_run_command_quotes_spaces_quotes_and_dollars():
    argv = ["lmjax", "train", "--config", "gpt3_small", "data.corpus=my file.txt", "x=$HOME", "it's"]
    line = commands.run_command(TpuTarget("my-slice", ZONE), argv, "r1", "gs://b/runs")
    assert line[:-1] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-slice", "--zone", ZONE,
                         "--worker=all", "--command"]
    assert line[-1] == (
        "cd ~/lmjax && . ~/lmjax-venv/bin/activate && export LMJAX_RUN_ID=r1 "
        "LMJAX_RUN_DIR=gs://b/runs/r1 && lmjax train --config gpt3_small 'data.corpus=my file.txt' "
        "'x=$HOME' 'it'\"'\"'s' run_dir=gs://b/runs/r1")


def test_remote_line_through_a_real_shell(tmp_path):
    """The worker's shell receives every argument unchanged (no expansion of `$`, no
    splitting at spaces) and sees the run id and directory in its environment."""
    (tmp_path / "lmjax").mkdir()
    (tmp_path / "lmjax-venv" / "bin").mkdir(parents=True)
    (tmp_path / "lmjax-venv" / "bin" / "activate").write_text("")
    argv = ["bash", "-c", 'printf "%s|" "$LMJAX_RUN_ID" "$LMJAX_RUN_DIR" "$@"', "_",
            "a b", "it's", "$HOME", 'say "hi"', "semi;colon", "`tick`"]
    line = commands.remote_run_line(argv, "run 1", "gs://b/o")
    out = subprocess.run(["bash", "-c", line], env={**os.environ, "HOME": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert out.split("|")[:-1] == ["run 1", "gs://b/o/run 1", "a b", "it's", "$HOME",
                                   'say "hi"', "semi;colon", "`tick`"]


def test_run_directory_is_pinned_unless_given():
    assert commands.with_run_dir(["lmjax", "sweep", "run", "e.yaml"], "gs://b/r") == [
        "lmjax", "sweep", "run", "e.yaml", "--output-dir", "gs://b/r"]
    assert commands.with_run_dir(["lmjax", "train", "run_dir=gs://mine"], "gs://b/r") == [
        "lmjax", "train", "run_dir=gs://mine"]
    assert commands.with_run_dir(["python", "x.py"], "gs://b/r") == ["python", "x.py"]
    target = TpuTarget("my-slice", ZONE)
    same = commands.default_run_id(target, ["lmjax", "train", "--config", "a"])
    assert same == commands.default_run_id(target, ["lmjax", "train", "--config", "a"])
    assert same != commands.default_run_id(target, ["lmjax", "train", "--config", "b"])
    assert same.startswith("my-slice-")


def test_setup_commands():
    target = TpuTarget("my-slice", ZONE)
    (install,) = commands.setup_version_commands(target, "0.3.0")
    assert install[-1].endswith("~/.local/bin/uv pip install --python ~/lmjax-venv/bin/python "
                                "'lmjax[tpu]==0.3.0'")
    archive, scp, ssh = commands.setup_source_commands(target, "/src", "/tmp/a.tar.gz")
    assert archive[:3] == ["tar", "-czf", "/tmp/a.tar.gz"] and archive[-3:] == ["-C", "/src", "."]
    assert shlex.join(scp) == ("gcloud compute tpus tpu-vm scp /tmp/a.tar.gz "
                               "my-slice:lmjax-src.tar.gz --zone us-east5-a --worker=all")
    assert "tar -xzf ~/lmjax-src.tar.gz -C ~/lmjax && cd ~/lmjax" in ssh[-1]
    assert ssh[-1].endswith("-e '.[tpu]'")


@pytest.mark.smoke
def test_cli_dry_run_prints_one_command_per_line(capsys):
    code = main(["tpu", "babysit", "my-slice", "--zone", ZONE, "--type", "v5p-64", "--spot",
                 "--version", "0.3.0", "--output-dir", "gs://b/runs", "--run-id", "r1",
                 "--dry-run", "--", "lmjax", "sweep", "run", "experiments/gpt3_family.yaml"])
    lines = capsys.readouterr().out.splitlines()
    target = TpuTarget("my-slice", ZONE)
    slice_spec = TpuSpec(target, "v5p-64", "spot")
    run = ["lmjax", "sweep", "run", "experiments/gpt3_family.yaml"]
    assert code == 0
    assert lines == [shlex.join(argv) for argv in (
        commands.state_command(target), commands.delete_command(target),
        commands.create_command(slice_spec), *commands.setup_version_commands(target, "0.3.0"),
        commands.run_command(target, run, "r1", "gs://b/runs"))]


def test_cli_options_after_the_name_and_command_options_after_dashes(capsys):
    assert main(["tpu", "run", "my-slice", "--zone", ZONE, "--output-dir", "gs://b", "--run-id",
                 "r", "--dry-run", "--", "lmjax", "train", "--zone", "x"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert shlex.split(line)[-1].endswith("lmjax train --zone x run_dir=gs://b/r")
    assert "--zone us-east5-a" in line


@pytest.mark.parametrize("argv, message", [
    (["create", "s", "--type", "v5e-16", "--zone", ZONE],
     "unknown TPU accelerator type 'v5e-16': use one of v2-N, v3-N, v4-N, v5litepod-N, v5p-N, v6e-N"),
    (["create", "s", "--type", "v5p-12", "--zone", ZONE], "a multiple of 8 cores"),
    (["create", "s", "--type", "v5p-64"], "no zone given: pass --zone ZONE"),
    (["create", "My_Slice", "--type", "v5p-64", "--zone", ZONE], "TPU name 'My_Slice' is not valid"),
    (["run", "s", "--zone", ZONE, "--output-dir", "gs://b", "--"], "lmjax tpu run needs a command after '--'"),
    (["babysit", "s", "--zone", ZONE, "--type", "v5p-64", "--output-dir", "gs://b"],
     "lmjax tpu babysit needs a command after '--'"),
    (["run", "s", "--zone", ZONE, "--", "lmjax", "train"], "no output directory: pass --output-dir gs://"),
    (["run", "s", "--zone", ZONE, "--type", "v5p-64", "--output-dir", "runs", "--", "lmjax", "train"],
     "the slice has 8 hosts, which must share one run directory"),
    (["status"], "no zone given"),
])
def test_one_line_errors(argv, message, capsys):
    assert main(["tpu", *argv, "--dry-run"] if "--" not in argv else
                ["tpu", *argv[:argv.index("--")], "--dry-run", *argv[argv.index("--"):]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_gcloud_is_reported_before_anything_runs(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "")
    assert main(["tpu", "create", "s", "--type", "v5p-64", "--zone", ZONE]) == 2
    assert "gcloud is not installed" in capsys.readouterr().err


class FakeCloud:
    """A queued resource that provisions after `provision_polls` state checks and a command
    whose runs follow `outcomes`: "ok" (exit 0), "fail" (exit 1, slice healthy) or "preempt"
    (the slice is SUSPENDED under the command, which exits 255 as ssh does)."""

    def __init__(self, state="", outcomes=(), provision_polls=2, create_codes=()):
        self.state, self.outcomes = state, list(outcomes)
        self.provision_polls, self.create_codes = provision_polls, list(create_codes)
        self.calls: list[str] = []
        self.runs: list[list[str]] = []
        self.polls = 0

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
        if kind == "run":
            self.runs.append(list(argv))
            outcome = self.outcomes.pop(0)
            if outcome == "preempt":
                self.state = "SUSPENDED"
            return Result({"ok": 0, "fail": 1, "preempt": 255}[outcome])
        return Result(0)

    @staticmethod
    def _kind(argv):
        if "queued-resources" in argv:
            verb = argv[argv.index("queued-resources") + 1]
            return "state" if verb == "describe" else verb
        return "run" if "LMJAX_RUN_ID" in argv[-1] else "setup"


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


RUN = commands.run_command(TpuTarget("my-slice", ZONE), ["lmjax", "train"], "r", "gs://b")
SETUP = commands.setup_version_commands(TpuTarget("my-slice", ZONE), "0.3.0")


def run_babysit(cloud, **policy):
    clock = FakeClock()
    outcome = babysit(spec(provisioning="spot"), SETUP, RUN, cloud,
                      BabysitPolicy(**{"poll_seconds": 10, **policy}),
                      sleep=clock.sleep, clock=clock, log=lambda line: None)
    return outcome, clock


def test_babysit_creates_a_missing_slice_sets_it_up_and_runs():
    cloud = FakeCloud(outcomes=["ok"])
    outcome, clock = run_babysit(cloud)
    assert cloud.calls == ["state", "create", "state", "state", "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (True, 1, 1)
    assert clock.sleeps == [10, 10]


def test_babysit_recreates_a_preempted_slice_and_reruns_the_same_command():
    cloud = FakeCloud(state="ACTIVE", outcomes=["preempt", "ok"], provision_polls=0)
    outcome, clock = run_babysit(cloud)
    assert cloud.calls == ["state", "run", "state", "delete", "create", "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (True, 2, 1)
    assert cloud.runs == [RUN, RUN]  # same run id and directory: the rerun resumes
    assert clock.sleeps == [60.0]


@pytest.mark.parametrize("dead", ["FAILED", "SUSPENDED", "PREEMPTED"])
def test_babysit_replaces_a_dead_slice_before_running(dead):
    cloud = FakeCloud(state=dead, outcomes=["ok"], provision_polls=0)
    outcome, _ = run_babysit(cloud)
    assert cloud.calls == ["state", "delete", "create", "state", "setup", "run"]
    assert outcome.succeeded


def test_babysit_gives_up_after_max_attempts_with_capped_backoff():
    cloud = FakeCloud(state="ACTIVE", outcomes=["fail"] * 5)
    outcome, clock = run_babysit(cloud, max_attempts=5, backoff_seconds=60, max_backoff_seconds=200)
    assert (outcome.succeeded, outcome.attempts, outcome.recreations) == (False, 5, 0)
    assert cloud.calls.count("run") == 5 and "create" not in cloud.calls
    assert clock.sleeps == [60, 120, 200, 200]
    assert outcome.events[-1] == "gave up after 5 attempts"


def test_babysit_bounds_the_wait_for_a_queued_slice():
    cloud = FakeCloud(outcomes=["ok"], provision_polls=10**9)
    outcome, clock = run_babysit(cloud, max_attempts=2, max_wait_seconds=100)
    assert not outcome.succeeded and "run" not in cloud.calls
    assert outcome.events.count("slice still WAITING_FOR_RESOURCES after 100 s") == 2


def test_babysit_retries_a_failed_create():
    cloud = FakeCloud(outcomes=["ok"], provision_polls=0, create_codes=[1, 0])
    outcome, _ = run_babysit(cloud)
    assert cloud.calls == ["state", "create", "state", "create", "state", "setup", "run"]
    assert (outcome.succeeded, outcome.attempts) == (True, 2)


def test_spec_rejects_bad_provisioning():
    with pytest.raises(ConfigError, match="provisioning 'cheap'"):
        spec(provisioning="cheap")
