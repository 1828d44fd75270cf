"""Each worker's record of what `lmjax tpu setup` installed there, and the check that every
worker of a slice runs the same thing before a command starts.

The record (VENV/lmjax-install.json: lmjax's version, source, commit, dirty, wheel sha256,
jax, jaxlib, libtpu, Python) is written on the worker by stdlib-only Python (`RECORD_SCRIPT`),
so it needs nothing of lmjax and a fake gcloud can run it locally. Before `lmjax tpu run`
starts a command, every worker prints its record in one line (`collect_line`); the lines are
compared here (`check_same`) and differing workers stop the run with one line naming both.
The run line then copies each worker's record into RUN_DIR/installs/WORKER.json (`publish`),
so a run directory says what produced it.
"""

from __future__ import annotations

import json
import shlex
import sys

from lmjax.errors import ConfigError

RECORD_NAME = "lmjax-install.json"
MARK = "LMJAX-INSTALL"

# argv: record path, source kind, requirement, commit, dirty (0/1), wheel sha256.
RECORD_SCRIPT = r"""
import json, os, platform, sys
from importlib import metadata
def version(*names):
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None
path, kind, requirement, commit, dirty, sha256 = sys.argv[1:7]
record = {"lmjax": version("lmjax"), "source": kind, "requirement": requirement,
          "commit": commit, "dirty": dirty == "1", "wheel_sha256": sha256,
          "jax": version("jax"), "jaxlib": version("jaxlib"),
          "libtpu": version("libtpu", "libtpu-nightly"), "python": platform.python_version()}
with open(path + ".tmp", "w") as f:
    json.dump(record, f, sort_keys=True)
os.replace(path + ".tmp", path)
print(json.dumps(record, sort_keys=True))
"""

# argv: record path. Prints "LMJAX-INSTALL WORKER RECORD-OR-MISSING" in one write.
COLLECT_SCRIPT = r"""
import json, os, socket, sys, urllib.request
def worker():
    for name in ("TPU_WORKER_ID", "CLOUD_TPU_TASK_ID"):
        if os.environ.get(name, "").strip():
            return "worker-" + os.environ[name].strip()
    url = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number"
    try:
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        return "worker-" + urllib.request.urlopen(request, timeout=2).read().decode().strip()
    except Exception:
        return socket.gethostname()
try:
    with open(sys.argv[1]) as f:
        record = json.dumps(json.load(f), sort_keys=True)
except (OSError, ValueError):
    record = "MISSING"
sys.stdout.write("LMJAX-INSTALL %s %s\n" % (worker(), record))
"""


def _tilde_path(path: str) -> str:
    """A worker path for the shell: `~/` left bare so the worker's shell expands it."""
    return "~/" + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


def record_path(venv: str) -> str:
    return f"{venv}/{RECORD_NAME}"


def _one_line(script: str) -> str:
    """A multi-line script as one line (`exec` of its repr), so each printed command is one line."""
    return f"exec({script.strip()!r})"


def record_line(venv: str, kind: str, requirement: str, commit: str, dirty: bool, sha256: str) -> str:
    """Writes the worker's record with the venv's Python (whose packages it describes)."""
    args = [kind, requirement, commit, "1" if dirty else "0", sha256 or "-"]
    return (f"{_tilde_path(venv + '/bin/python')} -c {shlex.quote(_one_line(RECORD_SCRIPT))} "
            f"{_tilde_path(record_path(venv))} {shlex.join(args)}")


def publish_line(venv: str) -> str:
    """The run line's step copying the record into $LMJAX_RUN_DIR/installs/ (lmjax runs it)."""
    return (f'python -m lmjax.cloud.install_record publish "$LMJAX_RUN_DIR" '
            f"{_tilde_path(record_path(venv))} >/dev/null")


def collect_line(venv: str) -> str:
    """Prints the worker's record in one line; the image's python3 reads it, so a worker
    without a venv still answers (MISSING)."""
    return f"python3 -c {shlex.quote(_one_line(COLLECT_SCRIPT))} {_tilde_path(record_path(venv))}"


def parse_records(output: str) -> dict[str, dict | None]:
    """{worker: record, or None where it has none} from the collected lines."""
    records: dict[str, dict | None] = {}
    for line in output.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) == 3 and parts[0] == MARK:
            records[parts[1]] = None if parts[2] == "MISSING" else json.loads(parts[2])
    return records


def check_same(records: dict[str, dict | None], hosts: int | None, name: str) -> None:
    """Every worker answered, has a record, and all records are equal; one line otherwise."""
    fix = f"run `lmjax tpu setup {name}` (again) so every worker installs the same"
    missing = sorted(worker for worker, record in records.items() if record is None)
    if missing:
        raise ConfigError(f"{missing[0]} of slice {name} has no install record "
                          f"({RECORD_NAME} in its venv): {fix}")
    if hosts and len(records) < hosts:
        raise ConfigError(f"only {len(records)} of the {hosts} workers of slice {name} "
                          f"reported an install record ({', '.join(sorted(records)) or 'none'}): {fix}")
    workers = sorted(records)
    for other in workers[1:]:
        first, second = records[workers[0]], records[other]
        if first != second:
            keys = [k for k in sorted(set(first) | set(second)) if first.get(k) != second.get(k)]
            def show(record: dict) -> str:
                return ", ".join(f"{k} {record.get(k)}" for k in keys)
            raise ConfigError(f"the workers of slice {name} run different installs: {workers[0]} "
                              f"has {show(first)}; {other} has {show(second)}: {fix}")


def publish(run_dir: str, record_file: str) -> str:
    """Copies this worker's record into RUN_DIR/installs/WORKER.json (run on the worker)."""
    import subprocess

    from etils import epath

    output = subprocess.run([sys.executable, "-c", COLLECT_SCRIPT, record_file],
                            capture_output=True, text=True, check=True).stdout
    ((worker, record),) = parse_records(output).items()
    if record is None:
        raise ConfigError(f"{worker} has no install record {record_file}: run `lmjax tpu setup`")
    target = epath.Path(run_dir) / "installs" / f"{worker}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    return str(target)


def main(argv: list[str] | None = None) -> int:
    """`python -m lmjax.cloud.install_record publish RUN_DIR RECORD`: the run line's first step."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "publish":
        print("usage: python -m lmjax.cloud.install_record publish RUN_DIR RECORD", file=sys.stderr)
        return 2
    try:
        print(publish(args[1], args[2]))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
