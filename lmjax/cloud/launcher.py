"""Runs `lmjax tpu` command lines with subprocess, or only prints them (`--dry-run`).

Commands are argv lists, never shell strings, so nothing local is re-parsed by a shell; a
printed line is `shlex.join(argv)`, which a user can paste into a shell unchanged.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from lmjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], capture: bool = False) -> Result: ...


class Launcher:
    """A Runner: executes commands (streaming their output unless `capture`) or prints them."""

    def __init__(self, dry_run: bool = False, out: TextIO | None = None) -> None:
        self.dry_run = dry_run
        self.out = out or sys.stdout

    def __call__(self, argv: Sequence[str], capture: bool = False) -> Result:
        if self.dry_run:
            print(shlex.join(argv), file=self.out, flush=True)
            return Result(0)
        completed = subprocess.run(list(argv), check=False, text=True,
                                   stdout=subprocess.PIPE if capture else None)
        return Result(completed.returncode, completed.stdout or "")

    def run_all(self, commands: Sequence[Sequence[str]]) -> int:
        """Runs commands in order and stops at the first that fails; its exit code, or 0."""
        for argv in commands:
            code = self(argv).returncode
            if code:
                print(f"lmjax tpu: `{shlex.join(argv)[:200]}` exited with {code}", file=sys.stderr)
                return code
        return 0


def check_tools(commands: Sequence[Sequence[str]]) -> None:
    """Every program the commands call is installed (gcloud above all), before any runs."""
    for program in sorted({argv[0] for argv in commands}):
        if shutil.which(program) is None:
            hint = (" (the Google Cloud SDK: https://cloud.google.com/sdk/docs/install)"
                    if program == "gcloud" else "")
            raise ConfigError(f"{program} is not installed or not on PATH{hint}; "
                              "--dry-run prints the commands without running them")


LOGIN_COMMAND = ["gcloud", "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"]


def check_gcloud(runner: Runner | None = None) -> None:
    """gcloud is installed and logged in, before anything is built or created."""
    check_tools([LOGIN_COMMAND])
    result = (runner or Launcher())(LOGIN_COMMAND, capture=True)
    if result.returncode or not result.stdout.strip():
        raise ConfigError("gcloud has no active account: run `gcloud auth login` (and "
                          "`gcloud config set project PROJECT`), then try again")
