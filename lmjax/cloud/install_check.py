"""The check that every worker of a slice has the same install, as a function (`lmjax tpu run`
calls it before the command) and as a command (`python -m lmjax.cloud.install_check NAME
--zone Z`) that ends `lmjax tpu setup`'s steps: babysit runs setup steps as commands and only
sees exit codes, so workers left with different installs fail the setup (exit 2) and the next
attempt sets them up again instead of starting a run that mixes them."""

from __future__ import annotations

import argparse
import sys

from lmjax.cloud import commands, install_record
from lmjax.cloud.launcher import Launcher, Runner
from lmjax.cloud.spec import TpuTarget
from lmjax.errors import ConfigError


def check_installs(target: TpuTarget, hosts: int | None, runner: Runner | None = None) -> None:
    """Collects every worker's install record (one ssh) and raises when they differ."""
    collected = (runner or Launcher())(commands.collect_installs_command(target), capture=True)
    install_record.check_same(install_record.parse_records(collected.stdout), hosts, target.name)


def command(target: TpuTarget) -> list[str]:
    """This module as a step of `lmjax tpu setup`, run where lmjax runs."""
    project = ["--project", target.project] if target.project else []
    return [sys.executable, "-m", "lmjax.cloud.install_check", target.name, "--zone", target.zone,
            *project]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmjax.cloud.install_check",
                                     description="check that every worker has the same install")
    parser.add_argument("name")
    parser.add_argument("--zone", required=True)
    parser.add_argument("--project", default="")
    args = parser.parse_args(argv)
    try:
        check_installs(TpuTarget(args.name, args.zone, args.project), None)
    except ConfigError as error:
        print(f"lmjax tpu: error: {error}", file=sys.stderr)
        return 2
    print(f"lmjax tpu: every worker of slice {args.name} has the same install", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
