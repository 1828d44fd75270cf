"""`lmjax tpu setup`: the wheel of the user's checkout (built for real with pip, its commit and
dirtiness read from git), the worker lines run through a real shell in a scratch home as a fake
gcloud would run them (twice: setup converges), and the install records compared across
workers. No cloud is needed."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shlex
import subprocess
import sys
import zipfile

import pytest

from lmjax.cli import main
from lmjax.cloud import commands, install, install_record
from lmjax.cloud.spec import TpuTarget
from lmjax.errors import ConfigError

ZONE = "us-east5-a"
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("CLOUDSDK_COMPUTE_ZONE", "CLOUDSDK_CORE_PROJECT", "LMJAX_OUTPUT_DIR",
                 "LMJAX_TPU_VENV", "LMJAX_TPU_PYTHON", "LMJAX_TPU_EXTRAS"):
        monkeypatch.delenv(name, raising=False)


def git(tree, *args):
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def tiny_checkout(tmp_path):
    """A committed project named lmjax (one module), so pip builds a wheel in a second."""
    tree = tmp_path / "src"
    (tree / "lmjax").mkdir(parents=True)
    (tree / "lmjax" / "__init__.py").write_text("VALUE = 1\n")
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n\n[project]\nname = "lmjax"\n'
        'version = "9.8.7"\n\n[tool.setuptools.packages.find]\ninclude = ["lmjax*"]\n')
    (tree / ".gitignore").write_text("/build/\n*.egg-info/\n")
    git(tmp_path, "init", "-q", str(tree))
    git(tree, "add", ".")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tree


def dry_setup(capsys, *options):
    code = main(["tpu", "setup", "my-slice", "--zone", ZONE, "--dry-run", *options])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_default_setup_builds_copies_installs_and_records_the_checkout(tiny_checkout, capsys):
    code, lines, _ = dry_setup(capsys, "--source", str(tiny_checkout))
    assert code == 0 and len(lines) == 7
    archive, build, venv, scp, pip, record, check = (shlex.split(line) for line in lines)
    assert check == [sys.executable, "-m", "lmjax.cloud.install_check", "my-slice", "--zone", ZONE]
    wheel_dir = build[build.index("--wheel-dir") + 1]
    assert archive == ["git", "-C", str(tiny_checkout), "archive", "--format=tar.gz",
                       "--prefix=lmjax-src/", "--output", f"{wheel_dir}/lmjax-src.tar.gz", "HEAD"]
    assert build[1:5] == ["-m", "pip", "wheel", "--no-deps"]
    assert build[-1] == f"{wheel_dir}/lmjax-src.tar.gz"
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp",
                   f"{wheel_dir}/lmjax-9.8.7-py3-none-any.whl",
                   "my-slice:lmjax-wheels/lmjax-9.8.7-py3-none-any.whl", "--zone", ZONE,
                   "--worker=all"]
    assert venv[-1] == ("mkdir -p ~/lmjax-wheels ~/lmjax && (test -x ~/.local/bin/uv || python3 "
                        "-m pip install --user --quiet uv) && ~/.local/bin/uv venv --seed "
                        "--allow-existing --python 3.12 ~/lmjax-venv")
    pip_prefix = "~/lmjax-venv/bin/python -m pip install --quiet --disable-pip-version-check"
    assert pip[-1] == (f"{pip_prefix} --force-reinstall --no-deps "
                       "~/lmjax-wheels/lmjax-9.8.7-py3-none-any.whl && "
                       f"{pip_prefix} ~/'lmjax-wheels/lmjax-9.8.7-py3-none-any.whl[tpu]'")
    commit = git(tiny_checkout, "rev-parse", "HEAD")
    assert shlex.split(record[-1])[-4:] == [
        "~/lmjax-wheels/lmjax-9.8.7-py3-none-any.whl", commit, "0", "-"]


@pytest.mark.parametrize("options, message", [
    ((), "has 1 uncommitted change(s) (first: ?? notes.txt): commit them so the workers run a "
         "recorded commit, or pass --allow-dirty"),
    (("--source", "git+https://example.com/lmjax"), "is not git+URL@REF"),
    (("--version", "not a version"), "--version 'not a version' is not a version"),
])
def test_bad_sources_are_one_line_errors(tiny_checkout, capsys, options, message):
    (tiny_checkout / "notes.txt").write_text("draft")
    options = options or ("--source", str(tiny_checkout))
    code, lines, err = dry_setup(capsys, *options)
    assert code == 2 and lines == [] and message in err and err.count("\n") == 1


def test_a_dirty_tree_is_built_with_allow_dirty_and_recorded_dirty(tiny_checkout, capsys):
    (tiny_checkout / "lmjax" / "__init__.py").write_text("VALUE = 2\n")
    code, lines, _ = dry_setup(capsys, "--source", str(tiny_checkout), "--allow-dirty")
    assert code == 0 and shlex.split(shlex.split(lines[-2])[-1])[-2] == "1"  # the record line


def test_a_tree_outside_git_is_refused_without_allow_dirty(tiny_checkout, capsys):
    subprocess.run(["rm", "-rf", str(tiny_checkout / ".git")], check=True)
    code, _, err = dry_setup(capsys, "--source", str(tiny_checkout))
    assert code == 2 and "is not a git checkout" in err


def test_git_and_version_sources_install_with_pip_on_the_workers():
    git_package = install.git_package("git+https://github.com/org/lmjax@v0.2.0")
    assert git_package.pip_requirement("tpu") == "lmjax[tpu] @ git+https://github.com/org/lmjax@v0.2.0"
    assert git_package.commit == "v0.2.0"
    assert install.version_package("0.3.0").pip_requirement("tpu") == "lmjax[tpu]==0.3.0"
    lines = commands.setup_commands(TpuTarget("s", ZONE), git_package)
    assert len(lines) == 3 and not any("scp" in argv for argv in lines)


def test_the_wheel_is_built_for_real_from_the_commit_and_its_digest_recorded(tiny_checkout, tmp_path):
    """The wheel holds the committed files only: not an ignored file lying in the package."""
    (tiny_checkout / ".gitignore").write_text("/build/\n*.egg-info/\nlmjax/scratch.py\n")
    git(tiny_checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "ignore")
    (tiny_checkout / "lmjax" / "scratch.py").write_text("LEFTOVER = 1\n")
    package, _ = install.plan(str(tiny_checkout), None, False, tmp_path / "wheels", build=True)
    wheel = pathlib.Path(package.local_wheel)
    assert wheel.name == "lmjax-9.8.7-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "lmjax/__init__.py" in names and "lmjax/scratch.py" not in names
    assert package.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert package.commit == git(tiny_checkout, "rev-parse", "HEAD") and not package.dirty
    assert git(tiny_checkout, "status", "--porcelain") == ""  # the build dirtied nothing


def test_a_wheel_that_will_not_build_is_one_line_naming_the_tree(tiny_checkout, tmp_path):
    (tiny_checkout / "pyproject.toml").write_text("[project\nname = ")
    with pytest.raises(ConfigError, match=f"the wheel of {tiny_checkout} did not build"):
        install.plan(str(tiny_checkout), None, True, tmp_path / "wheels", build=True)


def run_worker_lines(lines, home, worker_id):
    """As a worker's shell runs them: in its home, without this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(home), TPU_WORKER_ID=str(worker_id))
    for line in lines:
        done = subprocess.run(["bash", "-c", line], env=env, cwd=home, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    return done.stdout


def test_worker_lines_in_a_real_shell_converge_and_record_the_install(tmp_path, monkeypatch):
    """The venv and record lines as a fake gcloud runs them (an interpreter instead of uv, so
    nothing is downloaded), twice on the same worker: the second run converges."""
    monkeypatch.setenv("LMJAX_TPU_PYTHON", sys.executable)
    package = install.version_package("0.3.0")
    venv_line, _, record_line = install.worker_lines(package)
    for _ in range(2):
        printed = run_worker_lines([venv_line, record_line], tmp_path, 0)
    record = json.loads((tmp_path / "lmjax-venv" / "lmjax-install.json").read_text())
    assert json.loads(printed) == record
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert (record["source"], record["requirement"], record["commit"], record["dirty"]) == (
        "version", "lmjax==0.3.0", "", False)
    assert record["lmjax"] is None  # the install line did not run: nothing claims otherwise
    collected = run_worker_lines([install_record.collect_line("~/lmjax-venv")], tmp_path, 3)
    assert install_record.parse_records(collected) == {"worker-3": record}


RECORD = {"lmjax": "0.1.0", "commit": "abc", "jax": "0.10.1", "python": "3.12.3"}


def test_identical_installs_pass():
    output = "".join(f"{install_record.MARK} worker-{k} {json.dumps(RECORD)}\n" for k in range(4))
    install_record.check_same(install_record.parse_records(output), 4, "s")


@pytest.mark.parametrize("records, hosts, message", [
    ({"worker-0": RECORD, "worker-1": {**RECORD, "jax": "0.10.2", "commit": "def"}}, 2,
     "the workers of slice s run different installs: worker-0 has commit abc, jax 0.10.1; "
     "worker-1 has commit def, jax 0.10.2: run `lmjax tpu setup s` (again)"),
    ({"worker-0": RECORD, "worker-1": None}, 2, "worker-1 of slice s has no install record"),
    ({"worker-0": RECORD}, 2, "only 1 of the 2 workers of slice s reported an install record"),
])
def test_differing_or_missing_installs_are_refused_naming_the_workers(records, hosts, message):
    with pytest.raises(ConfigError) as error:
        install_record.check_same(records, hosts, "s")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_venv_and_python_are_settable_for_a_local_drill(monkeypatch):
    monkeypatch.setenv("LMJAX_TPU_VENV", "/tmp/w0/venv")
    monkeypatch.setenv("LMJAX_TPU_PYTHON", "python3.11")
    monkeypatch.setenv("LMJAX_TPU_EXTRAS", "")
    venv, pip, _ = install.worker_lines(install.version_package("1.0"))
    assert venv.endswith("python3.11 -m venv --system-site-packages /tmp/w0/venv")
    assert pip.endswith("/tmp/w0/venv/bin/python -m pip install --quiet "
                        "--disable-pip-version-check lmjax==1.0")
    monkeypatch.setenv("LMJAX_TPU_VENV", "/tmp/a b")
    with pytest.raises(ConfigError, match="LMJAX_TPU_VENV='/tmp/a b' must be a path"):
        install.remote_venv()


FAKE_GCLOUD = '''#!{python}
"""gcloud for one local worker whose home is $FAKE_HOME: ssh runs the line in bash there,
scp copies into it; every call is logged."""
import os, shutil, subprocess, sys
args = sys.argv[1:]
home = os.environ["FAKE_HOME"]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args[:4]) + "\\n")
if args[:2] == ["auth", "list"]:
    print("me@example.com")
elif any(a.startswith("--format=value(tpu.") for a in args):
    print("v4-8")
elif args[2:4] == ["tpu-vm", "scp"]:
    shutil.copy(args[4], os.path.join(home, args[5].split(":", 1)[1]))
elif args[2:4] == ["tpu-vm", "ssh"]:
    line = args[args.index("--command") + 1]
    env = {{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}}
    env.update(HOME=home, TPU_WORKER_ID="0")
    if "LMJAX_RUN_ID" in line:  # the run's lmjax (publish) is this checkout's
        env["PYTHONPATH"] = os.environ["FAKE_RUN_PYTHONPATH"]
    sys.exit(subprocess.run(["bash", "-c", line], env=env, cwd=home).returncode)
'''


@pytest.mark.e2e
@pytest.mark.slow
def test_setup_twice_then_run_on_a_local_worker(tiny_checkout, tmp_path, monkeypatch):
    """`lmjax tpu setup` (not a dry run) against a fake gcloud whose one worker is a local
    home: the wheel is built, copied, installed into a fresh venv and recorded; setup run a
    second time converges; `run` checks the record, activates the venv and copies the record
    into the run directory."""
    import site

    home, bin_dir = tmp_path / "worker", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
    (bin_dir / "gcloud").chmod(0o755)
    for name, value in {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_HOME": str(home),
                        "FAKE_LOG": str(tmp_path / "calls.log"),
                        "FAKE_RUN_PYTHONPATH": f"{REPO}:{site.getsitepackages()[0]}",
                        "LMJAX_TPU_PYTHON": sys.executable, "LMJAX_TPU_EXTRAS": ""}.items():
        monkeypatch.setenv(name, value)
    for _ in range(2):
        assert main(["tpu", "setup", "s", "--zone", ZONE, "--source", str(tiny_checkout)]) == 0
    wheel = home / "lmjax-wheels" / "lmjax-9.8.7-py3-none-any.whl"
    record = json.loads((home / "lmjax-venv" / "lmjax-install.json").read_text())
    assert record == {
        "lmjax": "9.8.7", "source": "wheel", "requirement": f"~/lmjax-wheels/{wheel.name}",
        "commit": git(tiny_checkout, "rev-parse", "HEAD"), "dirty": False,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "jax": None,
        "jaxlib": None, "libtpu": None, "python": ".".join(map(str, sys.version_info[:3]))}
    command = ["python", "-c", "import sys; open('ran', 'w').write(sys.prefix)"]
    assert main(["tpu", "run", "s", "--zone", ZONE, "--output-dir", str(tmp_path / "out"),
                 "--run-id", "r1", "--", *command]) == 0
    assert (home / "lmjax" / "ran").read_text() == str(home / "lmjax-venv")
    published = tmp_path / "out" / "r1" / "installs" / "worker-0.json"
    assert json.loads(published.read_text()) == record
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls.count("compute tpus tpu-vm scp") == 2 and calls[-1] == "compute tpus tpu-vm ssh"


def test_a_wheel_that_will_not_build_stops_setup_before_any_worker_is_touched(
        tiny_checkout, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text('#!/bin/bash\necho "$*" >> "$FAKE_LOG"\n'
                                    '[ "$1" = auth ] && echo me@example.com\nexit 0\n')
    (bin_dir / "gcloud").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    (tiny_checkout / "pyproject.toml").write_text("[project\nname = ")
    git(tiny_checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "break")
    assert main(["tpu", "setup", "s", "--zone", ZONE, "--source", str(tiny_checkout)]) == 2
    err = capsys.readouterr().err
    assert f"the wheel of {tiny_checkout} did not build (pip wheel exited 2: " in err
    assert err.count("\n") == 1
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "auth list --filter=status:ACTIVE --format=value(account)"]
