"""`lmjax tpu`: the gcloud command lines built from a slice spec, compared with the lines one
would type by hand (Google's queued-resources and tpu-vm ssh/scp syntax), the remote line run
through a real shell, and the one-line errors (babysit's loop: tests/test_tpu_babysit.py). No
cloud and no gcloud are needed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from lmjax.cli import main
from lmjax.cloud import commands
from lmjax.cloud.install import Package, version_package
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
        "LMJAX_RUN_DIR=gs://b/runs/r1 && python -m lmjax.cloud.install_record publish "
        '"$LMJAX_RUN_DIR" ~/lmjax-venv/lmjax-install.json >/dev/null && '
        "lmjax train --config gpt3_small 'data.corpus=my file.txt' "
        "'x=$HOME' 'it'\"'\"'s' run_dir=gs://b/runs/r1")


def test_remote_line_through_a_real_shell(tmp_path):
    """The worker's shell receives every argument unchanged (no expansion of `$`, no
    splitting at spaces) and sees the run id and directory in its environment; the worker's
    install record is copied into the run directory first."""
    (tmp_path / "lmjax").mkdir()
    (tmp_path / "lmjax-venv" / "bin").mkdir(parents=True)
    (tmp_path / "lmjax-venv" / "bin" / "activate").write_text("")
    (tmp_path / "lmjax-venv" / "lmjax-install.json").write_text('{"lmjax": "0.1.0"}')
    argv = ["bash", "-c", 'printf "%s|" "$LMJAX_RUN_ID" "$LMJAX_RUN_DIR" "$@"', "_",
            "a b", "it's", "$HOME", 'say "hi"', "semi;colon", "`tick`"]
    output_dir = str(tmp_path / "out")
    line = commands.remote_run_line(argv, "run 1", output_dir)
    env = {**os.environ, "HOME": str(tmp_path), "TPU_WORKER_ID": "0"}
    out = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split("|")[:-1] == ["run 1", f"{output_dir}/run 1", "a b", "it's", "$HOME",
                                   'say "hi"', "semi;colon", "`tick`"]
    assert (tmp_path / "out" / "run 1" / "installs" / "worker-0.json").read_text() == (
        '{\n "lmjax": "0.1.0"\n}\n')


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
    venv, install, record = commands.setup_commands(target, version_package("0.3.0"))
    assert install[-1].endswith("~/lmjax-venv/bin/python -m pip install --quiet "
                                "--disable-pip-version-check 'lmjax[tpu]==0.3.0'")
    assert "--python 3.12 ~/lmjax-venv" in venv[-1]
    assert record[-1].startswith("~/lmjax-venv/bin/python -c ")
    wheel = Package("wheel", "~/lmjax-wheels/lmjax-0.1.0-py3-none-any.whl", "/tmp/w/lmjax-0.1.0-py3-none-any.whl")
    _, scp, _, _ = commands.setup_commands(target, wheel)
    assert shlex.join(scp) == (
        "gcloud compute tpus tpu-vm scp /tmp/w/lmjax-0.1.0-py3-none-any.whl "
        "my-slice:lmjax-wheels/lmjax-0.1.0-py3-none-any.whl --zone us-east5-a --worker=all")


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
        commands.create_command(slice_spec), *commands.setup_commands(target, version_package("0.3.0")),
        [sys.executable, "-m", "lmjax.cloud.install_check", "my-slice", "--zone", ZONE],
        commands.run_command(target, run, "r1", "gs://b/runs"))]


def test_cli_options_after_the_name_and_command_options_after_dashes(capsys):
    assert main(["tpu", "run", "my-slice", "--zone", ZONE, "--output-dir", "gs://b", "--run-id",
                 "r", "--dry-run", "--", "lmjax", "train", "--zone", "x"]) == 0
    describe, collect, line = capsys.readouterr().out.splitlines()  # no --type: asked of gcloud
    assert describe.endswith("'--format=value(tpu.nodeSpec[0].node.acceleratorType)'")
    assert "lmjax-install.json" in collect
    assert shlex.split(line)[-1].endswith("lmjax train --zone x run_dir=gs://b/r")
    assert "--zone us-east5-a" in line


@pytest.mark.parametrize("argv, message", [
    (["create", "s", "--type", "v5e-16", "--zone", ZONE],
     "unknown TPU accelerator type 'v5e-16': use one of v2-N, v3-N, v4-N, v5litepod-N, v5p-N, v6e-N"),
    (["create", "s", "--type", "v5p-12", "--zone", ZONE],
     "'v5p-12' is not a published v5p slice: use one of v5p-8, v5p-16, v5p-32"),
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


def test_spec_rejects_bad_provisioning():
    with pytest.raises(ConfigError, match="provisioning 'cheap'"):
        spec(provisioning="cheap")
