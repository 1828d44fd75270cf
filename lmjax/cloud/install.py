"""What `lmjax tpu setup` installs on every worker, and the worker-side shell lines that do it.

By default the workers get what the user has: a wheel built from the local checkout (its git
commit recorded, a dirty tree refused without `--allow-dirty`), copied to every worker with
`tpu-vm scp --worker=all`. `--source git+URL@REF` and `--version X` (a published release) are
the explicit alternatives. Each worker step is one shell line that needs nothing of lmjax, so a
fake `gcloud` can run it on this machine (tests/fake_gcloud):

1. the venv: Python >= 3.12, which the TPU VM images do not ship (tpu-ubuntu2204-base has
   Ubuntu's 3.10), so uv makes the venv and downloads a managed CPython when the image lacks
   one; `LMJAX_TPU_PYTHON=/path/to/python3.x` makes it with that interpreter instead
   (`-m venv --system-site-packages`: reuses what it has, e.g. jax in the pod drill);
2. the install: lmjax reinstalled from the wheel even at an unchanged version, then its
   extras (`jax[tpu]`; `LMJAX_TPU_EXTRAS=` installs none, for a CPU drill);
3. the record: VENV/lmjax-install.json says what was installed (lmjax version, commit, dirty,
   wheel sha256, jax, jaxlib, libtpu, Python), written by stdlib Python (install_record.py).

Every line converges when run again on a worker left half set up: venvs are created only
where missing, pip reinstalls, the record is rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys

from lmjax.cloud.install_record import record_line
from lmjax.errors import ConfigError

DEFAULT_VENV = "~/lmjax-venv"
DEFAULT_PYTHON = "3.12"
DEFAULT_EXTRAS = "tpu"
UV = "~/.local/bin/uv"
REMOTE_WHEELS = "lmjax-wheels"  # relative to the worker's home


def remote_venv() -> str:
    """The workers' venv (`LMJAX_TPU_VENV`, default ~/lmjax-venv), a path the shell needs no
    quoting for (it is spliced into every worker line, `~` left to expand)."""
    venv = os.environ.get("LMJAX_TPU_VENV") or DEFAULT_VENV
    if not re.fullmatch(r"[~A-Za-z0-9_./-]+", venv):
        raise ConfigError(f"LMJAX_TPU_VENV={venv!r} must be a path of letters, digits and ._-/~")
    return venv


def remote_python() -> str:
    """A Python version for uv (default 3.12) or an interpreter on the worker (`LMJAX_TPU_PYTHON`)."""
    return os.environ.get("LMJAX_TPU_PYTHON") or DEFAULT_PYTHON


def remote_extras() -> str:
    extras = os.environ.get("LMJAX_TPU_EXTRAS")
    return DEFAULT_EXTRAS if extras is None else extras


@dataclasses.dataclass(frozen=True)
class Package:
    """What is installed: a local wheel, a git URL or a published version."""

    kind: str  # "wheel", "git" or "version"
    requirement: str  # the wheel's worker path, git+URL@REF or the version
    local_wheel: str = ""  # kind "wheel": the file built here
    commit: str = ""
    dirty: bool = False
    sha256: str = ""

    def pip_requirement(self, extras: str) -> str:
        """The pip argument that installs lmjax with `extras` (none when empty)."""
        suffix = f"[{extras}]" if extras else ""
        if self.kind == "wheel":
            return f"{self.requirement}{suffix}"
        if self.kind == "git":
            return f"lmjax{suffix} @ {self.requirement}"
        return f"lmjax{suffix}=={self.requirement}"

    def bare_requirement(self) -> str:
        return self.pip_requirement("")


def git_package(url: str) -> Package:
    """`--source git+URL@REF`: pip fetches it on each worker; REF is recorded as the commit."""
    if not url.startswith("git+") or "@" not in url.split("://", 1)[-1] or any(c.isspace() for c in url):
        raise ConfigError(f"--source {url!r} is not git+URL@REF: e.g. "
                          "git+https://github.com/ORG/lmjax@v0.2.0 (a tag, branch or commit)")
    return Package("git", url, commit=url.rsplit("@", 1)[1])


def version_package(version: str) -> Package:
    if not re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version or ""):
        raise ConfigError(f"--version {version!r} is not a version: give one such as 0.3.0")
    return Package("version", version)


def checkout_of_running_lmjax() -> pathlib.Path:
    """The source tree this lmjax runs from: what `lmjax tpu setup` ships by default."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise ConfigError(f"lmjax runs from an installed package ({root}), not a checkout: pass "
                          "--source DIR (a checkout), --source git+URL@REF or --version X")
    return root


def checkout_state(source: pathlib.Path, allow_dirty: bool) -> tuple[str, bool]:
    """(commit, dirty) of the checkout; a dirty or unversioned tree is refused unless allowed,
    because the workers' records could not say what they run."""
    head = _git(source, "rev-parse", "HEAD")
    if head is None:
        if not allow_dirty:
            raise ConfigError(f"{source} is not a git checkout, so the wheel's commit cannot be "
                              "recorded: commit it to git, or pass --allow-dirty")
        return "", True
    changes = _git(source, "status", "--porcelain") or ""
    if changes and not allow_dirty:
        first = changes.splitlines()[0].strip()
        count = len(changes.splitlines())
        raise ConfigError(f"{source} has {count} uncommitted change(s) (first: {first}): commit "
                          "them so the workers run a recorded commit, or pass --allow-dirty")
    return head.strip(), bool(changes)


def _git(source: pathlib.Path, *args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def wheel_build_commands(source: pathlib.Path, wheel_dir: pathlib.Path, dirty: bool) -> list[list[str]]:
    """pip builds the wheel (no dependencies), from `git archive HEAD` for a clean tree, so the
    wheel holds exactly the recorded commit (an in-tree build could pick up stale files from
    build/); from the tree itself with --allow-dirty. With the build backend installed here it
    builds without isolation, so no package index is needed."""
    isolation = ["--no-build-isolation"] if _has_backend() else []
    target = str(source)
    commands = []
    if not dirty:
        target = str(wheel_dir / "lmjax-src.tar.gz")
        commands.append(["git", "-C", str(source), "archive", "--format=tar.gz",
                         "--prefix=lmjax-src/", "--output", target, "HEAD"])
    return [*commands, [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation,
                        "--wheel-dir", str(wheel_dir), target]]


def _has_backend() -> bool:
    return all(importlib.util.find_spec(name) for name in ("setuptools", "wheel"))


def expected_wheel_name(source: pathlib.Path) -> str:
    """The wheel's file name from pyproject.toml's static version: what `--dry-run` prints."""
    text = (source / "pyproject.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ConfigError(f"{source / 'pyproject.toml'} has no static `version = \"...\"`: "
                          "pass --version X or --source git+URL@REF")
    return f"lmjax-{match.group(1)}-py3-none-any.whl"


def build_wheel(source: pathlib.Path, wheel_dir: pathlib.Path,
                build: list[list[str]]) -> pathlib.Path:
    """Runs the `build` commands into an emptied `wheel_dir` (our own); a failed build is one
    line naming the tree."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for old in [*wheel_dir.glob("lmjax-*.whl"), *wheel_dir.glob("lmjax-src.tar.gz")]:
        old.unlink()  # a previous build of ours
    for argv in build:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            break
    wheels = sorted(wheel_dir.glob("lmjax-*.whl"))
    if done.returncode or not wheels:
        lines = (done.stderr or done.stdout or "no output").strip().splitlines()
        reason = next((ln.strip() for ln in reversed(lines) if "error" in ln.lower()), lines[-1].strip())
        raise ConfigError(f"the wheel of {source} did not build (pip wheel exited "
                          f"{done.returncode}: {reason[:300]}): fix the build, or pass "
                          "--version X or --source git+URL@REF")
    return wheels[-1]


def wheel_package(wheel: pathlib.Path, commit: str, dirty: bool) -> Package:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest() if wheel.is_file() else ""
    return Package("wheel", f"~/{REMOTE_WHEELS}/{wheel.name}", str(wheel), commit, dirty, digest)


def venv_line(venv: str, python: str) -> str:
    """Creates or completes the venv (both ways are idempotent): uv with a managed Python for a
    version number, the named interpreter's `-m venv --system-site-packages` otherwise."""
    prepare = f"mkdir -p ~/{REMOTE_WHEELS} ~/lmjax"
    if re.fullmatch(r"\d+\.\d+(\.\d+)?", python):
        return (f"{prepare} && (test -x {UV} || python3 -m pip install --user --quiet uv) && "
                f"{UV} venv --seed --allow-existing --python {python} {venv}")
    return f"{prepare} && {shlex.quote(python)} -m venv --system-site-packages {venv}"


def install_line(package: Package, venv: str, extras: str) -> str:
    """lmjax itself reinstalled (a rebuilt wheel keeps its version number), then its extras."""
    pip = f"{venv}/bin/python -m pip install --quiet --disable-pip-version-check"
    bare, full = package.bare_requirement(), package.pip_requirement(extras)
    return (f"{pip} --force-reinstall --no-deps {_quote_path(bare)} && "
            f"{pip} {_quote_path(full)}")


def _quote_path(requirement: str) -> str:
    """Quoted for the shell, except a leading `~/`, which the worker's shell must expand."""
    if requirement.startswith("~/"):
        return "~/" + shlex.quote(requirement[2:])
    return shlex.quote(requirement)


def worker_lines(package: Package) -> list[str]:
    """The venv, install and record lines, in order, with the configured venv and Python."""
    venv = remote_venv()
    return [venv_line(venv, remote_python()), install_line(package, venv, remote_extras()),
            record_line(venv, package.kind, package.bare_requirement(), package.commit,
                        package.dirty, package.sha256)]


def plan(source: str | None, version: str | None, allow_dirty: bool, build_dir: pathlib.Path,
         build: bool) -> tuple[Package, list[list[str]]]:
    """The package setup installs and, for a local wheel, the commands that build it; with
    `build` the wheel is built now (a failure is one line), else only its name is predicted
    (`--dry-run`). Every check of the checkout runs either way, before anything is created."""
    if version is not None:
        return version_package(version), []
    if source is not None and source.startswith("git+"):
        return git_package(source), []
    tree = pathlib.Path(source).resolve() if source is not None else checkout_of_running_lmjax()
    if not (tree / "pyproject.toml").is_file():
        raise ConfigError(f"--source {tree} holds no pyproject.toml: give an lmjax checkout, "
                          "git+URL@REF or --version X")
    commit, dirty = checkout_state(tree, allow_dirty)
    commands = wheel_build_commands(tree, build_dir, dirty)
    wheel = (build_wheel(tree, build_dir, commands) if build
             else build_dir / expected_wheel_name(tree))
    return wheel_package(wheel, commit, dirty), commands
