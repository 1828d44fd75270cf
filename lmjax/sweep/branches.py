"""Cooldown branches: one warmup-stable-decay run, losses at several horizons.

```yaml
overrides: {train.schedule: wsd, train.decay_fraction: 0.2}
branches:                 # a mapping, or a list of them
  - from: "d_model=64*"   # the parent points: a glob over their names (or name-hash)
    at: [400, 800]        # the parent's steps where a branch starts its own decay, or
                          # shares of its stable phase (0.25: a quarter of its decay start)
```

Under WSD the rate before the decay does not depend on `train.steps`
(`lmjax.train.optimizer.wsd_decay_start`), so the parent's state at step S is also the state
at step S of a fresh run whose decay starts at S. A branch is that run: its `train.steps` is
the horizon T whose decay starts at S (T − round(decay_fraction·T) = S), it starts from a copy
of the parent's checkpoint of step S (state and data position) and decays on its own, so its
per-step losses are a fresh run's, bit for bit, at a fraction of the cost (Hägele et al. 2024).

The parent keeps its checkpoints of those steps (`checkpoint.keep_steps`, not part of its
identity); a branch's identity hash includes its parent's hash and S; runners start a branch
once the parent's checkpoint of S exists (`waiting`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import shutil
from typing import Any

from etils import epath

from lmjax.errors import ConfigError, DataError
from lmjax.train.optimizer import wsd_decay_start

BRANCH_KEY = "branch"  # the readable name's part: `<parent name>,branch=S`


def parse(file, value) -> list[dict[str, Any]]:
    """The `branches:` section as [{"from": glob, "at": [steps]}]."""
    entries = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list):
        raise ConfigError(f"sweep {file}: branches must be a mapping {{from: POINTS, at: [STEPS]}} or a list of them")
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"from", "at"}:
            raise ConfigError(f"sweep {file}: each branches entry needs exactly 'from' (a point name or "
                              "glob) and 'at' (the parent's steps where branches start decaying)")
        steps = entry["at"] if isinstance(entry["at"], list) else [entry["at"]]
        if not steps or not all(_step_or_share(s) for s in steps):
            raise ConfigError(f"sweep {file}: branches from {entry['from']!r}: at must list steps of 1 or "
                              "more, or shares of the stable phase between 0 and 1")
        parsed.append({"from": str(entry["from"]), "at": sorted(set(steps))})
    return parsed


def _step_or_share(value) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value < 1)


def _step(at, parent) -> int:
    """A step as given, or a share of the parent's stable phase as a step (rounded half up)."""
    if isinstance(at, int):
        return at
    train = parent.config.train
    return int(at * wsd_decay_start(train.steps, train.decay_fraction) + 0.5)


def horizon(step: int, decay_fraction: float) -> int | None:
    """The train.steps T whose WSD decay starts at `step`; None if no whole T does."""
    guess = round(step / (1.0 - decay_fraction)) if decay_fraction < 1 else None
    if guess is None:
        return None
    for steps in range(max(guess - 2, step), guess + 3):
        if wsd_decay_start(steps, decay_fraction) == step:
            return steps
    return None


def expand(spec, points: list, make_branch) -> list:
    """The points with each parent's `checkpoint.keep_steps` set, then the branches (after all
    parents); `make_branch(parent, step, steps)` builds one branch Point."""
    wanted: dict[str, set] = {}
    for entry in spec.branches:
        matched = [p for p in points if fnmatch.fnmatchcase(p.name, entry["from"])
                   or fnmatch.fnmatchcase(p.dir_name, entry["from"])]
        if not matched:
            raise ConfigError(f"sweep {spec.path}: branches from {entry['from']!r} match no point: "
                              "`lmjax sweep status FILE` lists their names")
        for parent in matched:
            wanted.setdefault(parent.dir_name, set()).update(entry["at"])
    parents, branches = [], []
    for point in points:
        steps = sorted({_step(at, point) for at in wanted.get(point.dir_name, ())})
        if steps:
            point = _keeping(point, steps)
            branches += [make_branch(point, step, _checked_horizon(spec, point, step)) for step in steps]
        parents.append(point)
    return parents + branches


def _keeping(point, steps: list[int]):
    checkpoint = dataclasses.replace(point.config.checkpoint,
                                     keep_steps=sorted(set(point.config.checkpoint.keep_steps) | set(steps)))
    return dataclasses.replace(point, config=dataclasses.replace(point.config, checkpoint=checkpoint))


def _checked_horizon(spec, parent, step: int) -> int:
    """The branch's train.steps; a one-line error where the parent cannot give the branch a
    fresh run's state (not WSD, or step S inside the parent's own warm-up or decay)."""
    train, where = parent.config.train, f"sweep {spec.path}: branch of {parent.name} at step {step}"
    if train.schedule != "wsd":
        raise ConfigError(f"{where}: the parent's train.schedule is {train.schedule}; branches need "
                          "wsd, whose rate before the decay does not depend on train.steps")
    start = wsd_decay_start(train.steps, train.decay_fraction)
    if not train.warmup_steps <= step < start:
        raise ConfigError(f"{where}: the step must lie in the parent's stable phase, steps "
                          f"{train.warmup_steps} to {start - 1} (its decay starts at {start})")
    steps = horizon(step, train.decay_fraction)
    if steps is None:
        raise ConfigError(f"{where}: no whole train.steps has its decay start at {step} with "
                          f"decay_fraction {train.decay_fraction}: pick a neighbouring step")
    return steps


# --- at run time: the worker copies the parent's checkpoint, runners wait for it ---

def parent_checkpoint(point_dir: epath.Path, record: dict[str, Any]) -> epath.Path:
    """The parent's checkpoint directory this branch starts from."""
    branch = record[BRANCH_KEY]
    return point_dir.parent / branch["parent"] / "checkpoints" / str(branch["step"])


def start_from_parent(point_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Copies the parent's checkpoint of step S into the branch's `checkpoints/` (once: a
    branch that already has checkpoints resumes its own), so the trainer resumes from it."""
    directory = epath.Path(point_dir)
    own = directory / "checkpoints"
    if own.is_dir() and any(p.name.isdigit() for p in own.iterdir()):
        return
    source = parent_checkpoint(directory, record)
    if not source.is_dir():
        raise DataError(f"branch {record['name']}: its parent's checkpoint {source} does not exist: run "
                        f"the parent {record[BRANCH_KEY]['parent']} first (with this branch in the sweep "
                        "file, so that it keeps step " f"{record[BRANCH_KEY]['step']})")
    partial = directory / "branch-copy.tmp"
    if partial.exists():
        shutil.rmtree(partial)  # an earlier copy cut short: ours, never the user's
    shutil.copytree(source, partial)
    own.mkdir(parents=True, exist_ok=True)
    partial.rename(own / source.name)


def waiting(directory: epath.Path, unfinished: list[epath.Path]) -> bool:
    """A branch waits while its parent's checkpoint is missing and the parent is still to
    run here (`unfinished`) or running elsewhere; otherwise it may start (and fails in one
    line if the checkpoint never came)."""
    from lmjax.sweep import status as status_lib

    record = status_lib.read_json(directory / status_lib.POINT_FILE) or {}
    if not record.get(BRANCH_KEY) or parent_checkpoint(directory, record).is_dir():
        return False
    parent = directory.parent / record[BRANCH_KEY]["parent"]
    return parent.name in {d.name for d in unfinished} or status_lib.read_status(parent)["state"] == "running"
