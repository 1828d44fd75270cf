"""Parameters alone: what `lmjax convert` exports and what `checkpoint.init_from` and
`open_run` read (an export's `params/`, or the parameters inside a run's latest checkpoint).

`restore_params` is the one place parameters come off disk, so a conversion between saved
layouts (e.g. per-layer and scanned, `model.scan_layers`) belongs here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import orbax.checkpoint as ocp
from etils import epath

from lmjax.errors import CheckpointError
from lmjax.runs.layout import PathLike, RunLayout

CHECKPOINT_ITEMS = ("state", "data")


def save_params(run_dir: PathLike, params: Any) -> epath.Path:
    """Writes a parameters-only checkpoint (what `lmjax convert` exports) under `run_dir`."""
    target = RunLayout.at(run_dir).params
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, params, force=True)
    checkpointer.wait_until_finished()
    return target


def latest_step(run_dir: PathLike) -> int | None:
    """The newest finished training checkpoint's step, or None when there is none."""
    directory = RunLayout.at(run_dir).checkpoints
    if not directory.is_dir():
        return None
    manager = ocp.CheckpointManager(directory, item_names=CHECKPOINT_ITEMS)
    step = manager.latest_step()
    manager.close()
    return step


def restore_params(run_dir: PathLike, abstract_params: Any | None = None) -> tuple[int | None, Any]:
    """(step, parameters) from a run directory: its exported `params/` (step None), else its
    latest training checkpoint. `abstract_params` (ShapeDtypeStructs with shardings) places
    them on devices; without it orbax restores them as saved."""
    layout = RunLayout.at(run_dir)
    if layout.params.is_dir():
        return None, ocp.StandardCheckpointer().restore(layout.params, abstract_params)
    step = latest_step(layout.root)
    if step is None:
        raise CheckpointError(
            f"{layout.root} has neither params/ nor checkpoints/<step>/: give a run directory of "
            "`lmjax train` or an export of `lmjax convert`"
        )
    if abstract_params is None:
        state_args = ocp.args.PyTreeRestore()
    else:
        target = {"params": abstract_params}
        state_args = ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        )
    manager = ocp.CheckpointManager(layout.checkpoints, item_names=CHECKPOINT_ITEMS)
    restored = manager.restore(step, args=ocp.args.Composite(state=state_args))
    manager.close()
    return step, restored["state"]["params"]


def load_params(run_dir: PathLike, abstract_params: Any | None = None) -> Any:
    """The parameters of `restore_params`, without the step (what `checkpoint.init_from` needs)."""
    return restore_params(run_dir, abstract_params)[1]
