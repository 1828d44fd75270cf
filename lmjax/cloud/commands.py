"""The gcloud command lines of `lmjax tpu`, each a pure function of a slice spec -> argv list.

Nothing here runs anything, so the exact command lines are tested without a cloud and printed
by `--dry-run`. Slices are queued resources (`gcloud compute tpus queued-resources`), the way
Google provisions spot, reserved and large slices; a worker is reached with
`gcloud compute tpus tpu-vm ssh NAME --worker=all --command LINE`, which runs LINE in a shell on
every host of the slice. Only LINE is shell text: user arguments in it are quoted with
`shlex`, so spaces, quotes and `$` reach the remote program unchanged; the fixed parts keep
`~` unquoted so the remote shell expands it.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence

from lmjax.cloud import install, install_record
from lmjax.cloud.install import Package
from lmjax.cloud.spec import TpuSpec, TpuTarget
from lmjax.errors import ConfigError

GCLOUD_TPUS = ("gcloud", "compute", "tpus")
REMOTE_DIR = "~/lmjax"  # the working directory of commands on every worker
# States of a queued resource (and its node) after which the slice is gone or will not recover.
DEAD_STATES = frozenset({"SUSPENDING", "SUSPENDED", "FAILED", "PREEMPTED", "TERMINATED"})
READY_STATES = frozenset({"ACTIVE", "READY"})


def _where(target: TpuTarget) -> list[str]:
    return ["--zone", target.zone] + (["--project", target.project] if target.project else [])


def create_command(spec: TpuSpec) -> list[str]:
    """A queued resource named like its node, so every later command needs only the name."""
    target = spec.target
    provisioning = {"spot": ["--spot"], "reserved": ["--reserved"], "on-demand": []}
    return [*GCLOUD_TPUS, "queued-resources", "create", target.name, "--node-id", target.name,
            *_where(target), "--accelerator-type", spec.accelerator_type,
            "--runtime-version", spec.runtime, *provisioning[spec.provisioning]]


def state_command(target: TpuTarget) -> list[str]:
    """Prints only the queued resource's state (ACTIVE, SUSPENDED, FAILED, ...)."""
    return [*GCLOUD_TPUS, "queued-resources", "describe", target.name, *_where(target),
            "--format=value(state.state)"]


def status_command(target: TpuTarget | None, zone: str, project: str = "") -> list[str]:
    """One slice described in full, or every queued resource in the zone."""
    if target is not None:
        return [*GCLOUD_TPUS, "queued-resources", "describe", target.name, *_where(target)]
    return [*GCLOUD_TPUS, "queued-resources", "list",
            *_where(TpuTarget("list", zone, project))]


def delete_command(target: TpuTarget) -> list[str]:
    """Deletes the queued resource and its node (`--force`) without a prompt (`--quiet`)."""
    return [*GCLOUD_TPUS, "queued-resources", "delete", target.name, *_where(target),
            "--force", "--quiet"]


def ssh_command(target: TpuTarget, remote_line: str, worker: str = "all") -> list[str]:
    """`remote_line` run by a shell on `worker` (every host of the slice by default)."""
    return [*GCLOUD_TPUS, "tpu-vm", "ssh", target.name, *_where(target), f"--worker={worker}",
            "--command", remote_line]


def scp_command(target: TpuTarget, local_path: str, remote_path: str, worker: str = "all") -> list[str]:
    return [*GCLOUD_TPUS, "tpu-vm", "scp", local_path, f"{target.name}:{remote_path}",
            *_where(target), f"--worker={worker}"]


def setup_commands(target: TpuTarget, package: Package) -> list[list[str]]:
    """Every worker: the venv, the wheel copied there (a local wheel), lmjax installed, and the
    record of what was installed; each step converges when run again (lmjax.cloud.install)."""
    venv_line, install_line, record_line = install.worker_lines(package)
    copy = ([scp_command(target, package.local_wheel, package.requirement.removeprefix("~/"))]
            if package.kind == "wheel" else [])
    return [ssh_command(target, venv_line), *copy, ssh_command(target, install_line),
            ssh_command(target, record_line)]


def collect_installs_command(target: TpuTarget) -> list[str]:
    """Every worker prints its install record in one line (install_record.check_same reads them)."""
    return ssh_command(target, install_record.collect_line(install.remote_venv()))


def accelerator_type_command(target: TpuTarget) -> list[str]:
    """Prints only the slice's accelerator type, for `run` without --type (its host count)."""
    return [*GCLOUD_TPUS, "queued-resources", "describe", target.name, *_where(target),
            "--format=value(tpu.nodeSpec[0].node.acceleratorType)"]


def default_run_id(target: TpuTarget, argv: Sequence[str]) -> str:
    """The slice's name and a hash of the command: the same command relaunched gets the same
    id, hence the same run directory, and resumes; a different command gets its own."""
    digest = hashlib.sha256("\0".join(argv).encode()).hexdigest()[:8]
    return f"{target.name}-{digest}"


def run_dir_of(output_dir: str, run_id: str) -> str:
    return f"{output_dir.rstrip('/')}/{run_id}"


def with_run_dir(argv: Sequence[str], run_dir: str) -> list[str]:
    """The command with its output pinned to `run_dir`, unless it names one itself:
    `run_dir=` for `lmjax train`, `--output-dir` for `lmjax sweep run`."""
    argv = list(argv)
    if argv[:2] == ["lmjax", "train"] and not any(a.startswith("run_dir=") for a in argv):
        return [*argv, f"run_dir={run_dir}"]
    if argv[:3] == ["lmjax", "sweep", "run"] and not any(
            a == "--output-dir" or a.startswith("--output-dir=") for a in argv):
        return [*argv, "--output-dir", run_dir]
    return argv


def remote_run_line(argv: Sequence[str], run_id: str, output_dir: str) -> str:
    """The shell line each worker runs: the venv, the run's id and directory in the
    environment (LMJAX_RUN_ID, LMJAX_RUN_DIR), the worker's install record copied into
    RUN_DIR/installs/, then the command, every argument quoted."""
    if not argv:
        raise ConfigError("no command after '--': e.g. lmjax tpu run NAME -- lmjax train --config gpt3_small")
    run_dir = run_dir_of(output_dir, run_id)
    command = shlex.join(with_run_dir(argv, run_dir))
    venv = install.remote_venv()
    return (f"cd {REMOTE_DIR} && . {venv}/bin/activate && "
            f"export LMJAX_RUN_ID={shlex.quote(run_id)} LMJAX_RUN_DIR={shlex.quote(run_dir)} && "
            f"{install_record.publish_line(venv)} && {command}")


def run_command(target: TpuTarget, argv: Sequence[str], run_id: str, output_dir: str) -> list[str]:
    """The same command on every worker of the slice, with a fixed run id and directory."""
    return ssh_command(target, remote_run_line(argv, run_id, output_dir))


def check_output_dir(output_dir: str, hosts: int | None) -> None:
    """A run directory every host can reach: a multi-host slice needs a bucket."""
    if not output_dir:
        raise ConfigError("no output directory: pass --output-dir gs://BUCKET/PATH (or set "
                          "LMJAX_OUTPUT_DIR); runs there survive the slice")
    if hosts and hosts > 1 and "://" not in output_dir:
        raise ConfigError(f"--output-dir {output_dir} is a local path but the slice has {hosts} "
                          "hosts, which must share one run directory: use gs://BUCKET/PATH")
