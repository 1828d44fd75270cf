"""Parameters alone: what `lmjax convert` exports and what `checkpoint.init_from` and
`open_run` read (an export's `params/`, or the parameters inside a run's latest checkpoint).

`restore_params` is the one place parameters come off disk, so a conversion between saved
layouts (e.g. per-layer and scanned, `model.scan_layers`) belongs here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from lmjax.config import ModelConfig
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


def restore_params(run_dir: PathLike, abstract_params: Any | None = None,
                   model_config: ModelConfig | None = None) -> tuple[int | None, Any]:
    """(step, parameters) from a run directory: its exported `params/` (step None), else its
    latest training checkpoint. `abstract_params` (ShapeDtypeStructs with shardings) places
    them on devices; without it orbax restores them as saved. Given the `model_config` they
    are for, parameters saved in the other layer layout (per-layer `h_0..` against scanned
    `h`, `model.scan_layers`) are converted on the way."""
    layout = RunLayout.at(run_dir)
    step = None if layout.params.is_dir() else latest_step(layout.root)
    if step is None and not layout.params.is_dir():
        raise CheckpointError(
            f"{layout.root} has neither params/ nor checkpoints/<step>/: give a run directory of "
            "`lmjax train` or an export of `lmjax convert`"
        )
    if abstract_params is not None and model_config is not None:
        saved = _saved_tree(layout, step)
        if jax.tree.structure(saved, is_leaf=_is_array) != jax.tree.structure(abstract_params):
            on_host = _restore(layout, step, jax.tree.map(_on_first_device, saved, is_leaf=_is_array))
            converted = convert_layout(on_host, model_config)
            return step, jax.tree.map(_place, converted, abstract_params)
    return step, _restore(layout, step, abstract_params)


def convert_layout(params: Any, model_config: ModelConfig) -> Any:
    """Parameters in the layer layout `model_config.scan_layers` asks for."""
    from lmjax.models import stack_layers, unstack_layers

    convert = stack_layers if model_config.scan_layers else unstack_layers
    return convert(params, model_config)


def _saved_tree(layout: RunLayout, step: int | None) -> Any:
    """The saved parameters' metadata (shapes and dtypes), read without loading arrays."""
    if step is None:
        return ocp.StandardCheckpointer().metadata(layout.params).item_metadata.tree
    # Metadata, unlike restore, takes no args that name the handler: register it here.
    manager = ocp.CheckpointManager(layout.checkpoints, item_handlers=_item_handlers(
        ocp.StandardCheckpointHandler()))
    tree = manager.item_metadata(step)["state"].tree["params"]
    manager.close()
    return tree


def _item_handlers(state_handler: ocp.CheckpointHandler) -> dict[str, ocp.CheckpointHandler]:
    """Handlers for both items of a training checkpoint, though only the state is read: orbax
    logs a warning for every item on disk that has none ('Item "data" was found ...')."""
    return {"state": state_handler, "data": ocp.JsonCheckpointHandler()}


def _is_array(node: Any) -> bool:
    """Orbax's array metadata (or an abstract array): a leaf, though orbax registers it as a node."""
    return hasattr(node, "shape") and hasattr(node, "dtype")


def _on_first_device(leaf: Any) -> jax.ShapeDtypeStruct:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=device)


def _place(value: Any, target: jax.ShapeDtypeStruct) -> jax.Array:
    if tuple(value.shape) != tuple(target.shape):
        raise CheckpointError(
            f"a saved parameter has shape {tuple(value.shape)} where the model has "
            f"{tuple(target.shape)}: the checkpoint belongs to another model shape"
        )
    return jax.device_put(value, target.sharding)


def _restore(layout: RunLayout, step: int | None, abstract_params: Any | None) -> Any:
    if step is None:
        return ocp.StandardCheckpointer().restore(layout.params, abstract_params)
    if abstract_params is None:
        state_args = ocp.args.PyTreeRestore()
    else:
        target = {"params": abstract_params}
        state_args = ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        )
    manager = ocp.CheckpointManager(layout.checkpoints,
                                    item_handlers=_item_handlers(ocp.PyTreeCheckpointHandler()))
    restored = manager.restore(step, args=ocp.args.Composite(state=state_args))
    manager.close()
    return restored["state"]["params"]


def load_params(run_dir: PathLike, abstract_params: Any | None = None,
                model_config: ModelConfig | None = None) -> Any:
    """The parameters of `restore_params`, without the step (what `checkpoint.init_from` needs)."""
    return restore_params(run_dir, abstract_params, model_config)[1]
