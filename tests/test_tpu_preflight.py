"""Checks before anything is created: accelerator types against the sizes Google's Cloud TPU
documentation publishes, a `lmjax train` command's mesh and batch against the slice, a local
output directory on a multi-host slice (also when the type comes from gcloud), gcloud missing
or logged out, workers whose installs differ. The CLI runs against a fake `gcloud` executable
that logs every call, so "nothing created" is checked on what was really invoked; where the
real Google Cloud SDK is installed, every printed line is also run through its own parser."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from lmjax.cli import main
from lmjax.cloud import commands
from lmjax.cloud.install import Package, version_package
from lmjax.cloud.spec import TpuSpec, TpuTarget
from lmjax.errors import ConfigError

ZONE = "us-east5-a"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("CLOUDSDK_COMPUTE_ZONE", "CLOUDSDK_CORE_PROJECT", "LMJAX_OUTPUT_DIR",
                 "LMJAX_TPU_VENV", "LMJAX_TPU_PYTHON", "LMJAX_TPU_EXTRAS"):
        monkeypatch.delenv(name, raising=False)


# Published sizes (cloud.google.com/tpu/docs/v2, v3, v4, v5e, v5p, v6e), typed from the pages.
@pytest.mark.parametrize("accelerator_type, devices, hosts", [
    ("v2-8", 8, 1), ("v2-512", 512, 64), ("v3-32", 32, 4), ("v3-2048", 2048, 256),
    ("v4-8", 4, 1), ("v4-16", 8, 2), ("v4-32", 16, 4), ("v4-1536", 768, 192), ("v4-4096", 2048, 512),
    ("v5litepod-1", 1, 1), ("v5litepod-8", 8, 1), ("v5litepod-16", 16, 4), ("v5litepod-256", 256, 64),
    ("v5p-8", 4, 1), ("v5p-32", 16, 4), ("v5p-128", 64, 16), ("v5p-12288", 6144, 1536),
    ("v6e-4", 4, 1), ("v6e-256", 256, 64),
])
def test_published_slices_their_devices_and_hosts(accelerator_type, devices, hosts):
    spec = TpuSpec(TpuTarget("s", ZONE), accelerator_type)
    assert (spec.devices, spec.hosts) == (devices, hosts)


@pytest.mark.parametrize("accelerator_type, listed", [
    ("v4-4", "use one of v4-8, v4-16, v4-32, v4-64, v4-128, v4-256, v4-384, v4-512,"),
    ("v5litepod-3", "use one of v5litepod-1, v5litepod-4, v5litepod-8, v5litepod-16, "
                    "v5litepod-32, v5litepod-64, v5litepod-128, v5litepod-256 (chips)"),
    ("v5litepod-12", "v5litepod-8, v5litepod-16"),
    ("v2-16", "use one of v2-8, v2-32, v2-128, v2-256, v2-512 (cores)"),
    ("v6e-2", "v6e-1, v6e-4, v6e-8"),
    ("v5p-12", "v5p-8, v5p-16, v5p-32, v5p-64, v5p-128"),
    ("v5p-16384", "v5p-12288 (cores)"),
])
def test_impossible_slices_are_refused_listing_the_valid_sizes(accelerator_type, listed, capsys):
    assert main(["tpu", "create", "s", "--type", accelerator_type, "--zone", ZONE, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{accelerator_type!r} is not a published" in err and listed in err
    assert err.count("\n") == 1


def dry_run(capsys, accelerator_type, *command, output_dir="gs://b/runs"):
    code = main(["tpu", "run", "s", "--zone", ZONE, "--type", accelerator_type, "--output-dir",
                 output_dir, "--dry-run", "--", *command])
    return code, capsys.readouterr()


@pytest.mark.parametrize("overrides, message", [
    (["mesh.data=1", "mesh.fsdp=8"], "config gpt_tiny does not fit a v4-32 (16 devices on 4 hosts): mesh "
                      "data*fsdp*tensor = 1*8*1 = 8 but there are 16 devices"),
    (["train.global_batch_size=24"],
     "train.global_batch_size=24 (microbatch 24) is not divisible by the data-parallel size "
     "data*fsdp=16"),
    (["mesh.data=1", "mesh.tensor=16", "train.global_batch_size=6"],
     "train.global_batch_size=6 is not divisible by the 4 hosts"),
])
def test_a_train_config_that_does_not_fit_the_slice_is_refused(capsys, overrides, message):
    code, captured = dry_run(capsys, "v4-32", "lmjax", "train", "--config", "gpt_tiny", *overrides)
    assert code == 2 and captured.out == "" and message in captured.err
    assert captured.err.count("\n") == 1


def test_a_train_config_that_fits_passes_and_other_commands_are_not_parsed(capsys):
    code, captured = dry_run(capsys, "v4-32", "lmjax", "train", "--config", "gpt_tiny",
                             "train.global_batch_size=32")
    remote = shlex.split(captured.out.splitlines()[-1])[-1]
    assert code == 0 and remote.endswith("lmjax train --config gpt_tiny "
                                         "train.global_batch_size=32 run_dir=gs://b/runs/s-"
                                         + remote[-8:])
    assert dry_run(capsys, "v4-32", "python", "anything.py", "--mesh", "7")[0] == 0


FAKE_GCLOUD = r"""#!/bin/bash
printf '%s\n' "$*" >> "$FAKE_LOG"
case "$*" in
  "auth list"*) [ -n "$FAKE_ACCOUNT" ] && echo "$FAKE_ACCOUNT"; exit 0 ;;
  *"--format=value(tpu.nodeSpec[0].node.acceleratorType)"*) echo "$FAKE_TYPE"; exit 0 ;;
  *"tpu-vm ssh"*"LMJAX_RUN_ID"*) exit 0 ;;
  *"tpu-vm ssh"*"lmjax-install.json"*) [ -z "$FAKE_SETUP" ] && cat "$FAKE_RECORDS"; exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """A `gcloud` first on PATH: logged in, a v4-32 slice whose four workers report the
    records in records.txt; every call is logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    record = {"lmjax": "0.1.0", "commit": "abc", "jax": "0.10.1"}
    (tmp_path / "records.txt").write_text("".join(
        f"LMJAX-INSTALL worker-{k} {json.dumps(record)}\n" for k in range(4)))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_RECORDS", str(tmp_path / "records.txt"))
    monkeypatch.setenv("FAKE_ACCOUNT", "me@example.com")
    monkeypatch.setenv("FAKE_TYPE", "v4-32")
    return tmp_path


def calls(root):
    log = root / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


RUN = ["tpu", "run", "s", "--zone", ZONE, "--output-dir", "gs://b/runs", "--",
       "lmjax", "train", "--config", "gpt_tiny", "train.global_batch_size=32"]


def test_run_asks_gcloud_for_the_type_checks_the_installs_then_runs(fake_gcloud):
    assert main(RUN) == 0
    made = calls(fake_gcloud)
    assert made[0] == "auth list --filter=status:ACTIVE --format=value(account)"
    assert "acceleratorType" in made[1] and "lmjax-install.json" in made[2]
    assert "LMJAX_RUN_ID" in made[3] and len(made) == 4


def test_run_refuses_workers_whose_installs_differ(fake_gcloud, capsys):
    records = (fake_gcloud / "records.txt").read_text().replace(
        'worker-2 {"lmjax": "0.1.0", "commit": "abc"', 'worker-2 {"lmjax": "0.1.0", "commit": "def"')
    (fake_gcloud / "records.txt").write_text(records)
    assert main(RUN) == 2
    err = capsys.readouterr().err
    assert "worker-0 has commit abc; worker-2 has commit def" in err and err.count("\n") == 1
    assert not any("LMJAX_RUN_ID" in call for call in calls(fake_gcloud))


def test_setup_ends_by_checking_that_every_worker_has_the_same_install(fake_gcloud, capfd):
    """The check is a command, so babysit, which sees only exit codes, re-runs a setup that
    left the workers with different installs."""
    setup = ["tpu", "setup", "s", "--zone", ZONE, "--version", "0.3.0"]
    assert main(setup) == 0
    assert "every worker of slice s has the same install" in capfd.readouterr().err
    records = (fake_gcloud / "records.txt").read_text()
    (fake_gcloud / "records.txt").write_text(records.replace('"jax": "0.10.1"}\n', '"jax": "0.11.0"}\n', 1))
    assert main(setup) == 2
    err = capfd.readouterr().err
    assert "worker-0 has jax 0.11.0; worker-1 has jax 0.10.1" in err
    assert "install_check s --zone us-east5-a` exited with 2" in err


def test_run_refuses_a_local_output_dir_when_gcloud_says_the_slice_is_multi_host(fake_gcloud, capsys):
    argv = [a if a != "gs://b/runs" else "runs" for a in RUN]
    assert main(argv) == 2
    assert "the slice has 4 hosts, which must share one run directory" in capsys.readouterr().err
    assert not any("tpu-vm ssh" in call for call in calls(fake_gcloud))


def test_run_refuses_a_mesh_that_does_not_fit_before_any_ssh(fake_gcloud, capsys):
    assert main([*RUN, "mesh.tensor=3"]) == 2
    assert "does not fit a v4-32" in capsys.readouterr().err
    assert not any("tpu-vm ssh" in call for call in calls(fake_gcloud))


@pytest.mark.parametrize("action", [
    ["create", "s", "--type", "v4-32"], ["setup", "s", "--version", "0.3.0"], RUN[1:],
    ["delete", "s"], ["babysit", "s", "--type", "v4-32", "--version", "0.3.0", "--output-dir",
                      "gs://b", "--", "lmjax", "train", "--config", "gpt_tiny", "train.global_batch_size=32"],
])
def test_logged_out_gcloud_is_refused_before_anything(fake_gcloud, monkeypatch, capsys, action):
    monkeypatch.setenv("FAKE_ACCOUNT", "")
    if "--zone" not in action:
        action = [*action[:2], "--zone", ZONE, *action[2:]]
    assert main(["tpu", *action]) == 2
    assert "gcloud has no active account: run `gcloud auth login`" in capsys.readouterr().err
    assert calls(fake_gcloud) == ["auth list --filter=status:ACTIVE --format=value(account)"]


def printed_lines(capsys):
    """Every gcloud line `lmjax tpu` prints, for each action and kind of setup."""
    wheel = Package("wheel", "~/lmjax-wheels/lmjax-0.1.0-py3-none-any.whl", "/etc/hostname")
    target = TpuTarget("my-slice", ZONE)
    lines = [shlex.join(argv) for argv in commands.setup_commands(target, wheel)]
    for argv in (["create", "my-slice", "--type", "v4-32", "--spot"], ["delete", "my-slice"],
                 ["status", "my-slice"], ["status"], ["setup", "my-slice", "--version", "0.3.0"],
                 ["run", "my-slice", "--output-dir", "gs://b", "--", "lmjax", "train", "x=1"],
                 ["babysit", "my-slice", "--type", "v5litepod-16", "--reserved", "--version",
                  "0.3.0", "--output-dir", "gs://b", "--", "python", "-c", "print('hi')"]):
        assert main(["tpu", *argv, "--zone", ZONE, "--dry-run"] if "--" not in argv else
                    ["tpu", *argv[:argv.index("--")], "--zone", ZONE, "--dry-run",
                     *argv[argv.index("--"):]]) == 0
        lines += capsys.readouterr().out.splitlines()
    return [line for line in lines if line.startswith("gcloud ")]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="the Google Cloud SDK is not installed")
def test_every_printed_line_passes_gclouds_own_parser(capsys, tmp_path):
    """Run with an empty gcloud configuration, a line whose arguments gcloud accepts gets as far
    as asking for credentials; a line it cannot parse fails earlier, with exit code 2."""
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_PROJECT": "p",
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    lines = printed_lines(capsys)
    assert len(lines) >= 12
    for line in lines:
        done = subprocess.run(shlex.split(line), env=env, capture_output=True, text=True, timeout=120)
        assert "You do not currently have an active account selected" in done.stderr, (line, done.stderr)
    bogus = subprocess.run(["gcloud", "compute", "tpus", "queued-resources", "list", "--zone", ZONE,
                            "--no-such-flag"], env=env, capture_output=True, text=True, timeout=120)
    assert bogus.returncode == 2 and "unrecognized arguments" in bogus.stderr


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="the Google Cloud SDK is not installed")
def test_the_real_gcloud_without_an_account_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    assert main(["tpu", "create", "s", "--type", "v4-32", "--zone", ZONE]) == 2
    assert "gcloud has no active account" in capsys.readouterr().err


def test_an_empty_version_is_refused():
    with pytest.raises(ConfigError, match="is not a version"):
        version_package("")
