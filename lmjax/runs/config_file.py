"""A run directory: its saved config decides whether a new start may resume it."""

from __future__ import annotations

import yaml
from etils import epath

from lmjax import config as config_lib
from lmjax.errors import CheckpointError
from lmjax.runs.layout import PathLike, RunLayout

# Settings a resumed run may change without changing what it trains.
RESUMABLE = (
    "name", "run_dir", "train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
    "train.eval_tasks", "train.eval_limit", "train.eval_truncate",
    "train.peak_flops", "checkpoint.every", "checkpoint.keep", "checkpoint.keep_steps", "data.data_dir", "data.cache_dir",
    "data.download", "data.worker_count", "mesh.data", "mesh.fsdp", "mesh.tensor",
    "mesh.coordinator_address", "mesh.num_processes", "mesh.process_id",
)

# Optimizer settings `lmjax train --restart-from STEP` may change: they change how the model
# is trained from a checkpoint on, never the model's shape or the data.
RESTARTABLE = ("lr", "warmup_steps", "min_lr_ratio", "weight_decay", "b1", "b2", "eps",
               "grad_clip", "skip_nonfinite_batches", "steps", "schedule", "decay_fraction",
               "decay_shape")


def _flatten(values: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_config(run_dir: PathLike) -> config_lib.Config:
    """The saved config of a run or export, type-checked as when it was written."""
    return config_lib.from_dict(_saved_values(RunLayout.at(run_dir).config))


def _saved_values(path: epath.Path, empty_ok: bool = False) -> dict:
    """config.yaml's mapping; a damaged file (not UTF-8, not YAML, not a mapping) is a one-line
    error naming it and the line, not a parser traceback. An empty one (a start cut short
    while writing it) conflicts with nothing when `empty_ok`."""
    try:
        values = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path} is not UTF-8 text (byte {err.start}): restore it from a "
                              "copy or use a new run_dir") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CheckpointError(f"{path} is not valid YAML ({where}{problem}): restore it from a "
                              "copy or use a new run_dir") from None
    if values is None and empty_ok:
        return {}
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not an lmjax config (a mapping of sections): restore it "
                              "from a copy or use a new run_dir")
    return values


def check_compatible(run_dir: PathLike, config: config_lib.Config) -> bool:
    """True when `run_dir` holds an earlier run of this config (to resume); raises if it holds
    a different one, before anything is written or compiled. Keys the saved config lacks
    were added to lmjax since; their defaults keep the old behaviour, so they do not conflict."""
    path = RunLayout.at(run_dir).config
    if not path.exists():
        return False
    saved = _flatten(_saved_values(path, empty_ok=True))
    new = _flatten(config_lib.to_dict(config))
    for key in sorted(saved):
        if key in RESUMABLE:
            continue
        if saved.get(key) != new.get(key):
            restart = (" (or continue from a checkpoint with `lmjax train ... --restart-from STEP`)"
                       if key.removeprefix("train.") in RESTARTABLE else "")
            raise CheckpointError(
                f"run dir {run_dir} holds a run with {key}={saved.get(key)!r} but this run asks "
                f"for {new.get(key)!r}: pass a new run_dir=... or match the saved config{restart}"
            )
    return True


def save_config(run_dir: PathLike, config: config_lib.Config) -> None:
    layout = RunLayout.at(run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(config_lib.to_yaml(config))
