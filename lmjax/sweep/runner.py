"""Drives a sweep: check every point, write its `point.json`, hand open points to an executor,
regenerate the results after each one, report what happened.

The runner calls the library (`lmjax.sweep.worker.run_point` -> `lmjax.train.train`), never
the `lmjax` command. It never stops because a point failed: the failure is recorded and the
next point runs; `run_sweep` returns the counts and the caller decides the exit code.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import subprocess
import sys
from typing import Any

from etils import epath

from lmjax.config import to_dict, validate
from lmjax.errors import ConfigError
from lmjax.runs.layout import as_path
from lmjax.sweep import branches
from lmjax.sweep import plan as plan_lib
from lmjax.sweep import results as results_lib
from lmjax.sweep import status as status_lib
from lmjax.sweep.spec import Point, SweepSpec, points as all_points


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How points are run: executor settings are in the executor object."""

    retry: bool = True
    stale_after: float = status_lib.DEFAULT_STALE_AFTER
    heartbeat: float | None = None


def select(points: list[Point], only: str | None) -> list[Point]:
    """The points whose readable name (or `<name>-<hash>`) matches the glob `only`."""
    if not only:
        return points
    chosen = [p for p in points if fnmatch.fnmatchcase(p.name, only) or fnmatch.fnmatchcase(p.dir_name, only)]
    if not chosen:
        raise ConfigError(f"--only {only!r} matches none of the {len(points)} points: "
                          "`lmjax sweep status FILE` lists their names")
    return chosen


def check_points(points: list[Point], n_devices: int | None, n_processes: int | None) -> None:
    """Every point's config (against the devices and hosts when known), before anything runs."""
    from lmjax.eval.callback import check_eval_tasks

    for point in points:
        try:
            validate(point.config, n_devices, n_processes)
            check_eval_tasks(point.config)
        except ConfigError as err:
            raise ConfigError(f"point {point.name}: {err}") from None


def keep_accelerators_free() -> None:
    """Makes this process's own JAX work (parameter counts for the plan) use the CPU, so the
    runner never takes a TPU or GPU away from the points it starts (a TPU is held by one
    process; JAX preallocates GPU memory). No-op once JAX has started its backend."""
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_platforms", "cpu")


def probe_devices(timeout: float = 120.0) -> tuple[int, int] | None:
    """The device and process counts a point will see, from a short subprocess (the runner
    itself stays off the accelerators); None if the probe fails (then the mesh is checked
    when each point starts)."""
    code = "import lmjax, jax; print(jax.device_count(), jax.process_count())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, check=True)
        devices, processes = done.stdout.split()[-2:]
        return int(devices), int(processes)
    except (subprocess.SubprocessError, ValueError):
        return None


def sweep_dir(spec: SweepSpec) -> epath.Path:
    return as_path(spec.output_dir)


def point_dir(spec: SweepSpec, point: Point) -> epath.Path:
    return sweep_dir(spec) / point.dir_name


def prepare(spec: SweepSpec, points: list[Point]) -> list[epath.Path]:
    """Writes each point's `point.json` and returns the dirs. Same hash, same point: a record
    is rewritten only where fields outside the identity changed (a parent's
    `checkpoint.keep_steps` after branches were added) and the point has not succeeded."""
    dirs = []
    for point in points:
        directory = point_dir(spec, point)
        path, record = directory / status_lib.POINT_FILE, point_record(point)
        if not path.exists() or (status_lib.read_json(path) != record
                                 and status_lib.read_status(directory)["state"] != "succeeded"):
            status_lib.write_json(path, record)
        dirs.append(directory)
    return dirs


def point_record(point: Point) -> dict[str, Any]:
    return {"name": point.name, "hash": point.hash, "values": point.values,
            "overrides": point.overrides, "variables": point.variables,
            "eval_tasks": point.eval_tasks, "config": to_dict(point.config),
            "plan": plan_lib.estimate(point.config), "branch": point.branch}


def collect(spec: SweepSpec, points: list[Point]) -> list[dict[str, Any]]:
    """One row per point from its files; a point never run is named from the spec."""
    rows = []
    for point in points:
        row = results_lib.point_row(point_dir(spec, point))
        known = {"name": point.name, "hash": point.hash, "values": point.values,
                 "overrides": point.overrides, "variables": point.variables, "listed": True}
        rows.append({**row, **{k: v for k, v in known.items() if row.get(k) is None}})
    return rows


def regenerate(spec: SweepSpec, points: list[Point]) -> list[dict[str, Any]]:
    """Rebuilds results.jsonl, summary.md and summary.csv from every point's files; results.jsonl
    also keeps the rows of point directories the sweep file no longer lists (an edit changed
    or removed them), marked `"listed": false`: their results are not thrown away."""
    rows = collect(spec, points)
    results_lib.write_results(sweep_dir(spec), rows, unlisted_rows(spec, points))
    return rows


def unlisted_rows(spec: SweepSpec, points: list[Point]) -> list[dict[str, Any]]:
    """Rows of the point directories under the sweep directory that `points` do not name."""
    root, listed = sweep_dir(spec), {point.dir_name for point in points}
    if not root.is_dir():
        return []
    found = sorted(d for d in root.iterdir() if d.name not in listed and (d / status_lib.POINT_FILE).exists())
    return [{**results_lib.point_row(d), "listed": False} for d in found]


def run_sweep(spec: SweepSpec, points: list[Point], executor, options: RunOptions) -> dict[str, int]:
    """Runs the open points on `executor` (`LocalExecutor`, `RayExecutor`); returns state counts
    over `points` once the executor is done. The tables always cover every point of the sweep,
    so workers started with different `--only` patterns do not overwrite each other's rows."""
    keep_accelerators_free()
    dirs = prepare(spec, points)
    everything = all_points(spec)
    regenerate(spec, everything)
    executor.run(dirs, options, on_done=lambda: regenerate(spec, everything))
    regenerate(spec, everything)
    rows = collect(spec, points)
    return results_lib.state_counts(rows)


def next_ready(queue: list[epath.Path], unfinished: list[epath.Path]) -> epath.Path | None:
    """The first dir of `queue` that need not wait (a cooldown branch waits for its parent's
    checkpoint while the parent is `unfinished` here or running elsewhere)."""
    return next((d for d in queue if not branches.waiting(d, unfinished)), None)


def open_dirs(dirs: list[epath.Path], options: RunOptions) -> list[epath.Path]:
    """The dirs an executor should start now: not done and not held by a live worker."""
    return [d for d in dirs
            if status_lib.availability(d, stale_after=options.stale_after, retry=options.retry) == "open"]


def worker_args(directory: epath.Path, options: RunOptions) -> list[str]:
    """Arguments of `python -m lmjax.sweep.worker` for one point."""
    args = [str(directory), "--stale-after", str(options.stale_after)]
    if options.heartbeat:
        args += ["--heartbeat", str(options.heartbeat)]
    if not options.retry:
        args.append("--no-retry")
    return args
