"""A command bound for a slice checked against that slice on this machine, before anything is
created or reached by ssh: a `lmjax train` command is parsed by `lmjax train`'s own parser and
its config resolved and validated as `lmjax train --check` does, with the slice's device count
(the mesh's product must equal it) and host count (the global batch divides over hosts and
over the data-parallel devices). Other commands (a sweep has its own `--dry-run`) pass as they
are."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from lmjax.cloud.spec import TpuSpec
from lmjax.errors import ConfigError


def train_arguments(argv: Sequence[str]) -> argparse.Namespace | None:
    """`lmjax train ...` parsed as the CLI parses it; None for any other command."""
    if list(argv[:2]) != ["lmjax", "train"]:
        return None
    from lmjax.commands import train

    parser = argparse.ArgumentParser(prog="lmjax", exit_on_error=False)
    train.register(parser.add_subparsers(dest="command"))
    try:
        return parser.parse_args(list(argv[1:]))
    except (argparse.ArgumentError, SystemExit):
        raise ConfigError(f"`{shlex.join(argv)[:200]}` is not a valid lmjax train command: "
                          "run it with --check here to see why") from None


def check_command(argv: Sequence[str], spec: TpuSpec) -> None:
    """Raises a one-line ConfigError when a `lmjax train` command cannot run on `spec`."""
    args = train_arguments(argv)
    if args is None:
        return
    from lmjax import config as config_lib
    from lmjax.config.validate import validate

    config = config_lib.load_config(args.config, args.overrides)
    try:
        validate(config, spec.devices, spec.hosts)
    except ConfigError as error:
        raise ConfigError(f"config {args.config} does not fit a {spec.accelerator_type} "
                          f"({spec.devices} devices on {spec.hosts} hosts): {error}") from None
