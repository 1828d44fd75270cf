"""`--executor ray` (`pip install lmjax[ray]`): each point a Ray task with its own resources.

The driver (`lmjax sweep run --executor ray --ray-address ADDR`) submits one task per open point
with the sweep's `resources` (cpus, gpus, tpus, or any custom Ray resource), so a Ray cluster
of GPU nodes or TPU VMs runs the points where they fit, as Levanter and Marin do. Tasks run
with `max_calls=1`: Ray starts a fresh worker process for each point, so no XLA state leaks.
The task claims the point itself (`lmjax.sweep.worker.run_point`), so the same claims protect
against a second driver or a local worker on the same sweep directory, which every node must
reach (a shared filesystem or a bucket). `LMJAX_*` environment variables of the driver are
passed to the tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from etils import epath

from lmjax.errors import ConfigError
from lmjax.sweep.runner import RunOptions, next_ready, open_dirs


def _run_task(directory: str, stale_after: float, retry: bool, heartbeat: float | None) -> str:
    from lmjax.sweep.worker import run_point

    return run_point(directory, stale_after=stale_after, retry=retry, heartbeat_every=heartbeat)


def task_options(resources: dict[str, Any]) -> dict[str, Any]:
    """Ray's remote options from the sweep's `resources` (cpus, gpus, tpus, custom names)."""
    custom = {k: float(v) for k, v in resources.items() if k not in ("cpus", "gpus", "tpus")}
    if resources.get("tpus"):
        custom["TPU"] = float(resources["tpus"])
    options = {"num_cpus": float(resources.get("cpus", 1)), "num_gpus": float(resources.get("gpus", 0)),
               "max_calls": 1, "max_retries": 0}
    if custom:
        options["resources"] = custom
    return options


class RayExecutor:
    def __init__(self, address: str | None = None, resources: dict[str, Any] | None = None):
        self.address = address
        self.resources = resources or {}

    def run(self, dirs: list[epath.Path], options: RunOptions, on_done: Callable[[], None]) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("LMJAX_") or k == "XLA_FLAGS"}
            ray.init(address=self.address, runtime_env={"env_vars": env}, log_to_driver=False)
        task = ray.remote(**task_options(self.resources))(_run_task)
        queue, pending = open_dirs(dirs, options), {}
        while True:
            # cooldown branches are submitted once their parent's checkpoint exists
            while (directory := next_ready(queue, [*queue, *pending.values()])) is not None:
                queue.remove(directory)
                pending[task.remote(str(directory), options.stale_after, options.retry,
                                    options.heartbeat)] = directory
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker process died: the point stays claimed until stale
                print(f"lmjax sweep: a Ray task failed: {str(err).splitlines()[0]}")
            on_done()
        for directory in queue:
            print(f"lmjax sweep: {directory.name} waits for its parent, which runs elsewhere; run again later")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'lmjax[ray]'") from None
    return ray
