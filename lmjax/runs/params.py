"""Parameters alone: what `lmjax convert` exports and what `checkpoint.init_from` and
`open_run` read (an export's `params/`, or the parameters inside a run's latest checkpoint)."""

from __future__ import annotations

import pathlib
from typing import Any

import orbax.checkpoint as ocp

from lmjax.errors import CheckpointError

PARAMS_DIR = "params"


def save_params(run_dir: pathlib.Path, params: Any) -> pathlib.Path:
    """Writes a parameters-only checkpoint (what `lmjax convert` exports) under `run_dir`."""
    target = pathlib.Path(run_dir).absolute() / PARAMS_DIR
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, params, force=True)
    checkpointer.wait_until_finished()
    return target


def load_params(run_dir: pathlib.Path, abstract_params: Any | None = None) -> Any:
    """Parameters from a run directory: its exported `params/`, else its latest training
    checkpoint. `abstract_params` (ShapeDtypeStructs with shardings) places them on devices."""
    run_dir = pathlib.Path(run_dir).absolute()
    if (run_dir / PARAMS_DIR).is_dir():
        return ocp.StandardCheckpointer().restore(run_dir / PARAMS_DIR, abstract_params)
    manager = ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "data"))
    step = manager.latest_step()
    if step is None:
        raise CheckpointError(
            f"{run_dir} has neither params/ nor checkpoints/: give a run directory of "
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
    restored = manager.restore(step, args=ocp.args.Composite(state=state_args))
    manager.close()
    return restored["state"]["params"]
