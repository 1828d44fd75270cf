"""Runs one sweep point: claim it, train it through `lmjax.train.train`, record the outcome.

Executors start this once per point in a fresh process (`python -m lmjax.sweep.worker DIR`),
so no XLA state leaks from one point to the next. A point that spans several hosts (a TPU
pod slice) is started on every host: process 0 claims it and tells the others through
`multihost_utils.broadcast_one_to_all`, then all hosts train it together; only process 0
heartbeats and writes the status. The trainer resumes from the run directory's latest
checkpoint by itself, so re-running an interrupted point continues it.

Exit codes: 0 succeeded, 1 failed, 3 not claimed (done, or held by another worker),
4 interrupted (a stop request or SIGTERM saved a checkpoint).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import traceback
from typing import Any

from lmjax.errors import LmjaxError
from lmjax.sweep import lifetime
from lmjax.sweep import status as status_lib

EXIT = {"succeeded": 0, "failed": 1, "skipped": 3, "interrupted": 4}
HARNESS_PREFIX = "harness/"  # lmjax.eval.callback names its metrics harness/<task>/<metric>


def run_point(point_dir: str, *, stale_after: float = status_lib.DEFAULT_STALE_AFTER,
              retry: bool = True,
              heartbeat_every: float | None = None) -> str:
    """Claims and trains the point in `point_dir`; returns its new state or 'skipped'."""
    from lmjax import config as config_lib

    point = status_lib.read_json(status_lib.as_path(point_dir) / status_lib.POINT_FILE)
    config = config_lib.from_dict(point["config"])
    claim = claim_on_primary(point_dir, config, stale_after=stale_after, retry=retry)
    if claim is None:
        return "skipped"
    previous = status_lib.read_status(point_dir)
    running = status_lib.running_record(claim, previous.get("attempts", 0) + 1, stale_after)
    if claim.record is not None:
        status_lib.write_status(point_dir, running)
        failed = _start_branch(point_dir, point)
        if failed:
            status_lib.write_status(point_dir, {**running, **failed, "finished": status_lib.now()})
            return "failed"
    record = _train(config, claim, running, heartbeat_every or max(stale_after / 10, 1.0))
    if claim.record is not None and claim.held():  # a worker that took the point over owns its status
        status_lib.write_status(point_dir, {**running, **record, "finished": status_lib.now()})
    return record["state"]


def _start_branch(point_dir: str, point: dict[str, Any]) -> dict[str, Any] | None:
    """A cooldown branch starts from its parent's checkpoint (lmjax.sweep.branches); the
    failed record if that checkpoint is missing."""
    if not point.get("branch"):
        return None
    from lmjax.sweep.branches import start_from_parent

    try:
        start_from_parent(point_dir, point)
    except LmjaxError as err:
        return {"state": "failed", "error": str(err).splitlines()[0]}
    return None


def claim_on_primary(point_dir: str, config, *, stale_after: float, retry: bool):
    """Process 0 claims; with several processes the others learn the claim number from it
    and hold a record-less `Claim` (they neither heartbeat nor write the status)."""
    import jax

    from lmjax import parallel

    parallel.initialize_distributed(config.mesh)
    claim = status_lib.try_claim(point_dir, stale_after=stale_after, retry=retry) \
        if jax.process_index() == 0 else None
    if jax.process_count() == 1:
        return claim
    import numpy as np
    from jax.experimental import multihost_utils

    number = int(multihost_utils.broadcast_one_to_all(np.int32(claim.number if claim else 0)))
    if number == 0:
        return None
    return claim or status_lib.Claim(point_dir, number, None)


def _train(config, claim, running: dict[str, Any], every: float) -> dict[str, Any]:
    from lmjax.eval.callback import callbacks_for
    from lmjax.train import StopRequest, train
    from lmjax.train.callbacks import default_callbacks
    from lmjax.train.checkpoint import is_primary

    evaluation = callbacks_for(config)  # train.eval_tasks
    if claim.record is None:
        return _outcome(lambda: train(config, [*default_callbacks(is_primary(), progress=False),
                                               *evaluation], defaults=False))
    with status_lib.Heartbeat(claim, running, every) as beat:
        stop = StopRequest(beat.lost)
        callbacks = [*default_callbacks(True, progress=False), *evaluation, stop]
        return _outcome(lambda: train(config, callbacks, defaults=False))


def _outcome(run) -> dict[str, Any]:
    """succeeded with the RunResult, interrupted if it stopped early, or failed in one line."""
    try:
        result = run()
    except LmjaxError as err:
        return {"state": "failed", "error": str(err).splitlines()[0]}
    except Exception as err:  # a bug or a crash in a library: record it, keep the traceback in the log
        traceback.print_exc()
        first = (str(err).splitlines() or [""])[0]
        return {"state": "failed", "error": f"{type(err).__name__}: {first}"}
    return {"state": "interrupted" if result.preempted else "succeeded", "error": None,
            "result": result_summary(result)}


def result_summary(result) -> dict[str, Any]:
    """The RunResult without its records, plus tokens/s and MFU (medians over logged windows,
    the first, which includes compilation, left out when there are others) and the last
    evaluation's harness metrics (`harness/<task>/<metric>`, from `train.eval_tasks`)."""
    summary = result.to_dict()
    records = summary.pop("records")
    windows = records[1:] if len(records) > 1 else records
    for key in ("tokens_per_sec", "mfu"):
        values = [r[key] for r in windows if r.get(key) is not None]
        summary[key] = statistics.median(values) if values else None
    evaluated = [r for r in records if any(k.startswith(HARNESS_PREFIX) for k in r)]
    summary["eval_metrics"] = {k: v for k, v in evaluated[-1].items()
                               if k.startswith(HARNESS_PREFIX)} if evaluated else {}
    return summary


def main(argv: list[str] | None = None) -> int:
    lifetime.die_with_runner()
    parser = argparse.ArgumentParser(prog="python -m lmjax.sweep.worker")
    parser.add_argument("point_dir")
    parser.add_argument("--stale-after", type=float, default=status_lib.DEFAULT_STALE_AFTER)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--no-retry", action="store_true")
    args = parser.parse_args(argv)
    try:
        state = run_point(args.point_dir, stale_after=args.stale_after, retry=not args.no_retry,
                          heartbeat_every=args.heartbeat)
    except LmjaxError as err:  # point.json unreadable or no longer a valid config: nothing claimed
        print(f"lmjax sweep worker: error: {err}", file=sys.stderr)
        return 2
    print(f"{os.path.basename(args.point_dir.rstrip('/'))}: {state}", file=sys.stderr)
    return EXIT[state]


if __name__ == "__main__":
    sys.exit(main())
