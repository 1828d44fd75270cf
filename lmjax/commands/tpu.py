"""`lmjax tpu create|setup|run|status|delete|babysit`: Cloud TPU VM slices from the command
line (docs/tpu.md). Every gcloud command is built by `lmjax.cloud.commands` from a spec;
`--dry-run` prints them, one per line, and runs nothing."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
from collections.abc import Sequence


class _CommandParser(argparse.ArgumentParser):
    """Takes everything after the first `--` as the remote command, verbatim, so options may
    come before or after the slice's name and the command's own options stay its own."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        command = args[args.index("--") + 1:] if "--" in args else []
        args = args[:args.index("--")] if "--" in args else args
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.remote_command = command
        return namespace, extras


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tpu", help="create, set up, run on and babysit Cloud TPU VM slices",
        description="Cloud TPU VM slices as queued resources: create one, install lmjax on "
        "every worker, run a command on all workers with a fixed run directory, check, delete, "
        "or babysit a command through preemptions (docs/tpu.md).")
    actions = parser.add_subparsers(dest="tpu_command", metavar="ACTION", required=True,
                                    parser_class=_CommandParser)
    create = _action(actions, "create", "create a slice (a queued resource)")
    _slice_options(create, type_required=True)
    setup = _action(actions, "setup", "install lmjax on every worker")
    _install_options(setup)
    run = _action(actions, "run", "run a command on every worker: lmjax tpu run NAME -- CMD ...")
    _run_options(run, with_type=True)
    status = _action(actions, "status", "describe a slice, or list the zone's slices", name_optional=True)
    delete = _action(actions, "delete", "delete a slice and its queued resource")
    babysit = _action(actions, "babysit", "rerun a command until it succeeds, recreating a "
                      "preempted slice: lmjax tpu babysit NAME --type T -- CMD ...")
    _slice_options(babysit, type_required=True)
    _install_options(babysit)
    _run_options(babysit, with_type=False)
    babysit.add_argument("--max-attempts", type=int, default=10)
    babysit.add_argument("--backoff", type=float, default=60.0, metavar="SECONDS",
                         help="wait before the 2nd attempt, doubled each time (max 30 min)")
    babysit.add_argument("--max-wait", type=float, default=6 * 3600.0, metavar="SECONDS",
                         help="stop if the queued slice is not ACTIVE after this long (6 h)")
    babysit.add_argument("--stale-after", type=float, default=1800.0, metavar="SECONDS",
                         help="restart all workers when a run's heartbeat is this old; 0: never")
    babysit.add_argument("--poll", type=float, default=60.0, metavar="SECONDS",
                         help="between checks of a provisioning slice and of a running command")
    for action, func in ((create, _create), (setup, _setup), (run, _run), (status, _status),
                         (delete, _delete), (babysit, _babysit)):
        action.set_defaults(func=func)


def _action(actions, name: str, help_text: str, name_optional: bool = False) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("name", nargs="?" if name_optional else None, help="the slice's name")
    parser.add_argument("--zone", default=None, help="e.g. us-east5-a (default: $CLOUDSDK_COMPUTE_ZONE)")
    parser.add_argument("--project", default=None, help="default: gcloud's ($CLOUDSDK_CORE_PROJECT)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser


def _slice_options(parser: argparse.ArgumentParser, type_required: bool) -> None:
    parser.add_argument("--type", dest="accelerator_type", required=type_required,
                        help="accelerator type, e.g. v5p-64, v5litepod-16, v6e-8, v4-32")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--spot", action="store_const", const="spot", dest="provisioning")
    kind.add_argument("--reserved", action="store_const", const="reserved", dest="provisioning")
    parser.set_defaults(provisioning="on-demand")
    parser.add_argument("--runtime", default="", help="TPU VM software version (default: per generation)")


def _install_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--version", default=None,
                        help="pip install the published 'lmjax[tpu]==VERSION' instead of a wheel")
    source.add_argument("--source", nargs="?", const=".", default=None, metavar="DIR|git+URL@REF",
                        help="a checkout to build the wheel from (default: the one this lmjax "
                        "runs from; bare --source: .), or git+URL@REF for pip to fetch")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build the wheel from a tree with uncommitted changes")


def _run_options(parser: argparse.ArgumentParser, with_type: bool) -> None:
    """The run id and output directory; `with_type` adds --type where no create option does."""
    parser.add_argument("--run-id", default=None,
                        help="fixed id of the run (default: NAME and a hash of the command)")
    parser.add_argument("--output-dir", default=None,
                        help="where runs live, e.g. gs://BUCKET/runs (default: $LMJAX_OUTPUT_DIR)")
    if with_type:
        parser.add_argument("--type", dest="accelerator_type", default=None,
                            help="the slice's accelerator type, to check the output directory")


def _target(args: argparse.Namespace):
    from lmjax.cloud.spec import TpuTarget, default_project, default_zone

    return TpuTarget(args.name, args.zone or default_zone(), args.project or default_project())


def _spec(args: argparse.Namespace):
    from lmjax.cloud.spec import TpuSpec

    return TpuSpec(_target(args), args.accelerator_type, args.provisioning, args.runtime)


def _install(args: argparse.Namespace, target) -> tuple[list[list[str]], list[list[str]]]:
    """(local steps, worker steps) of the setup: the wheel's build, then scp and ssh lines.
    Checks the checkout (and builds the wheel unless --dry-run) before anything is created."""
    from lmjax.cloud import commands, install, install_check

    build_dir = pathlib.Path(tempfile.gettempdir()) / f"lmjax-wheel-{os.getuid()}-{target.name}"
    package, build = install.plan(args.source, args.version, args.allow_dirty, build_dir,
                                  build=not args.dry_run)
    if build and not args.dry_run:
        state = "dirty" if package.dirty else "clean"
        print(f"lmjax tpu: built {package.local_wheel} (commit {package.commit or 'none'}, "
              f"{state} tree)", file=sys.stderr, flush=True)
    return build, [*commands.setup_commands(target, package), install_check.command(target)]


def _run_line(args: argparse.Namespace, target, action: str, accelerator_type: str | None) -> list[str]:
    """The ssh command running the user's command, after every check of the arguments: the
    output directory against the slice's hosts, a `lmjax train` config against its chips."""
    from lmjax.cloud import commands, preflight
    from lmjax.cloud.spec import TpuSpec
    from lmjax.errors import ConfigError

    argv = args.remote_command
    if not argv:
        raise ConfigError(f"lmjax tpu {action} needs a command after '--', e.g. "
                          f"lmjax tpu {action} NAME -- lmjax sweep run experiments/gpt3_family.yaml")
    output_dir = args.output_dir or os.environ.get("LMJAX_OUTPUT_DIR", "")
    spec = TpuSpec(target, accelerator_type) if accelerator_type else None
    commands.check_output_dir(output_dir, spec.hosts if spec else None)
    if spec is not None:
        preflight.check_command(argv, spec)
    run_id = args.run_id or commands.default_run_id(target, argv)
    return commands.run_command(target, argv, run_id, output_dir)


def _execute(args: argparse.Namespace, planned: list[list[str]]) -> int:
    from lmjax.cloud.launcher import Launcher, check_tools

    if not args.dry_run:
        _check_gcloud()
        check_tools(planned)
    return Launcher(args.dry_run).run_all(planned)


def _check_gcloud() -> None:
    from lmjax.cloud.launcher import check_gcloud

    check_gcloud()


def _create(args: argparse.Namespace) -> int:
    from lmjax.cloud import commands

    return _execute(args, [commands.create_command(_spec(args))])


def _setup(args: argparse.Namespace) -> int:
    from lmjax.cloud.launcher import Launcher, check_tools

    target = _target(args)
    if args.dry_run:
        build, setup = _install(args, target)
        return Launcher(dry_run=True).run_all([*build, *setup])
    _check_gcloud()  # before the wheel's build, which takes a while
    _, setup = _install(args, target)
    check_tools(setup)
    return Launcher().run_all(setup)


def _run(args: argparse.Namespace) -> int:
    """Checks the slice's type (asked of gcloud when --type is absent), the command against
    it, and that every worker has the same install, before the command starts anywhere."""
    from lmjax.cloud import commands, install_check
    from lmjax.cloud.launcher import Launcher
    from lmjax.cloud.spec import TpuSpec

    target = _target(args)
    if args.dry_run:
        ask = [] if args.accelerator_type else [commands.accelerator_type_command(target)]
        run = _run_line(args, target, "run", args.accelerator_type)
        return Launcher(dry_run=True).run_all([*ask, commands.collect_installs_command(target), run])
    _check_gcloud()
    accelerator_type = args.accelerator_type or _slice_type(target)
    run = _run_line(args, target, "run", accelerator_type)
    install_check.check_installs(target, TpuSpec(target, accelerator_type).hosts)
    return Launcher().run_all([run])


def _slice_type(target) -> str:
    """The existing slice's accelerator type, from gcloud (one line if there is no slice)."""
    from lmjax.cloud import commands
    from lmjax.cloud.launcher import Launcher
    from lmjax.errors import ConfigError

    described = Launcher()(commands.accelerator_type_command(target), capture=True)
    if described.returncode or not described.stdout.strip():
        raise ConfigError(f"no slice {target.name} in zone {target.zone} to run on (`gcloud ... "
                          f"queued-resources describe` exited {described.returncode}): create "
                          f"it with `lmjax tpu create {target.name} --type T`")
    return described.stdout.strip()


def _status(args: argparse.Namespace) -> int:
    from lmjax.cloud import commands
    from lmjax.cloud.spec import default_project, default_zone, missing_zone_message
    from lmjax.errors import ConfigError

    if args.name:
        return _execute(args, [commands.status_command(_target(args), "")])
    zone = args.zone or default_zone()
    if not zone:
        raise ConfigError(missing_zone_message())
    return _execute(args, [commands.status_command(None, zone, args.project or default_project())])


def _delete(args: argparse.Namespace) -> int:
    from lmjax.cloud import commands

    return _execute(args, [commands.delete_command(_target(args))])


def _babysit(args: argparse.Namespace) -> int:
    from lmjax.cloud import commands
    from lmjax.cloud.babysit import (BabysitPolicy, babysit, no_heartbeats, read_heartbeats,
                                     stop_command)
    from lmjax.cloud.launcher import Launcher, check_tools
    from lmjax.errors import ConfigError

    spec = _spec(args)
    run = _run_line(args, spec.target, "babysit", spec.accelerator_type)
    if args.max_attempts < 1:
        raise ConfigError(f"--max-attempts {args.max_attempts} must be at least 1")
    if not args.dry_run:
        _check_gcloud()
    build, setup = _install(args, spec.target)
    plan = [commands.state_command(spec.target), commands.delete_command(spec.target),
            commands.create_command(spec), *setup, run]
    if args.dry_run:
        return Launcher(dry_run=True).run_all([*build, *plan])
    check_tools(plan)
    run_id = args.run_id or commands.default_run_id(spec.target, args.remote_command)
    run_dir = commands.run_dir_of(args.output_dir or os.environ.get("LMJAX_OUTPUT_DIR", ""), run_id)
    policy = BabysitPolicy(max_attempts=args.max_attempts, backoff_seconds=args.backoff,
                           max_wait_seconds=args.max_wait, stale_after_seconds=args.stale_after,
                           poll_seconds=args.poll)
    outcome = babysit(spec, setup, run, Launcher(), policy,
                      heartbeats=read_heartbeats(run_dir) if args.stale_after > 0 else no_heartbeats,
                      stop=stop_command(spec.target, run_id),
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0 if outcome.succeeded else 1
