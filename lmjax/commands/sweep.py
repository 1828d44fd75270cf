"""`lmjax sweep run FILE [--dry-run] [--only GLOB] [--executor local|ray] ...` and
`lmjax sweep status FILE`: experiments as sweep files (docs/sweeps.md)."""

from __future__ import annotations

import argparse
import sys

from lmjax.commands.output_dir import check_output_dir
from lmjax.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="run a sweep of configs (experiments/NAME.yaml)",
                                   description="Run or inspect a sweep file: a base config, "
                                   "overrides, grid, zip and derived values (docs/sweeps.md).")
    commands = parser.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    run = commands.add_parser("run", help="run every open point (skips succeeded ones)")
    _common(run)
    run.add_argument("--dry-run", action="store_true",
                     help="validate every point and list N, D, C, estimated time and status; run nothing")
    run.add_argument("--only", metavar="GLOB", help="only points whose name matches, e.g. 'd_model=64,*'")
    run.add_argument("--executor", "--backend", dest="executor", choices=("local", "ray"), default="local",
                     help="what runs the points: local processes or Ray tasks (--backend: the old name)")
    run.add_argument("--workers", type=int, default=1, help="local: points run at once (default 1)")
    run.add_argument("--no-retry", action="store_true", help="leave failed points failed")
    run.add_argument("--stale-after", type=float, default=600.0, metavar="SECONDS",
                     help="a running point silent this long may be claimed again (default 600)")
    run.add_argument("--ray-address", default=None, help="ray: the cluster (default: start one locally)")
    run.add_argument("--cpus-per-point", type=float, default=None)
    run.add_argument("--gpus-per-point", type=float, default=None)
    run.add_argument("--tpus-per-point", type=float, default=None)
    run.add_argument("--no-calibrate", action="store_true",
                     help="dry-run: skip timing a few compiled steps of the cheapest point")
    run.set_defaults(func=run_command)
    status = commands.add_parser("status", help="print the results table with progress counts")
    _common(status)
    status.set_defaults(func=status_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the sweep file, e.g. experiments/gpt_scaling.yaml")
    parser.add_argument("--output-dir", default=None, help="the sweep directory (default: the file's output_dir)")


def _load(args):
    from lmjax.sweep import load_spec, points
    from lmjax.sweep.runner import select

    spec = load_spec(args.file, args.output_dir)
    return spec, select(points(spec), getattr(args, "only", None))


def run_command(args: argparse.Namespace) -> int:
    _check_run_options(args)
    spec, chosen = _load(args)
    if args.dry_run:
        from lmjax.sweep.dry_run import dry_run

        print(dry_run(spec, chosen, calibrate=not args.no_calibrate))
        return 0
    from lmjax.sweep.runner import RunOptions, check_points, keep_accelerators_free, probe_devices, run_sweep

    where = "--output-dir" if args.output_dir else f"sweep {spec.path}: output_dir"
    check_output_dir(spec.output_dir, label=where)
    keep_accelerators_free()
    executor = _executor(args, spec)
    devices = probe_devices() if args.executor == "local" else _ray_devices(executor.resources)
    if devices is None:
        print("lmjax sweep: mesh and batch layout not checked (device count unknown here); "
              "each point checks them when it starts", file=sys.stderr)
    check_points(chosen, *(devices or (None, None)))
    from lmjax.sweep.isoflop import checked_epochs

    checked_epochs(spec, chosen)  # an isoflop block: no point above max_epochs
    options = RunOptions(retry=not args.no_retry, stale_after=args.stale_after)
    counts = run_sweep(spec, chosen, executor, options)
    print(f"sweep {spec.name}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
          + f"; results in {spec.output_dir}/summary.md")
    return 1 if counts["failed"] else 0


def _check_run_options(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give how many points run at once, 1 or more")
    if not args.stale_after > 0:
        raise ConfigError(f"--stale-after {args.stale_after}: give the seconds of silence after which a "
                          "running point may be claimed again, more than 0")


def _executor(args, spec):
    if args.executor == "local":
        from lmjax.sweep.executors.local import LocalExecutor

        return LocalExecutor(args.workers)
    from lmjax.sweep.executors.ray import RayExecutor

    resources = dict(spec.resources)
    for key in ("cpus", "gpus", "tpus"):
        given = getattr(args, f"{key}_per_point")
        if given is not None:
            resources[key] = given
    return RayExecutor(args.ray_address, resources)


def _ray_devices(resources: dict) -> tuple[int, int] | None:
    """A Ray point's devices: the GPUs or TPU chips it asks for, on one host."""
    wanted = resources.get("tpus") or resources.get("gpus")
    return (int(wanted), 1) if wanted else None


def status_command(args: argparse.Namespace) -> int:
    from lmjax.sweep import results
    from lmjax.sweep.runner import collect

    spec, chosen = _load(args)
    rows = collect(spec, chosen)
    header = [title for title, _ in results.columns_for(rows)]
    print(f"sweep {spec.name} ({spec.output_dir}): {results.progress(rows)}")
    print(results.plain_table(header, results.table(rows)))
    sys.stdout.flush()
    return 0
