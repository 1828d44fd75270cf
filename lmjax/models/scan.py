"""A stack of identical blocks, run as a Python loop or as one `nn.scan` (`model.scan_layers`).

The loop names its blocks `<name>_0 .. <name>_{L-1}` (the names the Hugging Face and llama2.c
importers write); the scan traces and compiles one block and keeps its parameters under
`<name>` with a leading layers dimension (logical axis "layers", on no mesh axis), so a deep
model compiles in about the time of a shallow one. `stack_layers` and `unstack_layers`
convert parameters between the two layouts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.models.attention import LayerCache

REMAT_POLICIES = {
    "full": None,
    "dots_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(block: type[nn.Module], config: ModelConfig) -> type[nn.Module]:
    """The block rematerialised by `model.remat`; under scan without CSE prevention, which
    flax recommends there (the scan's loop already keeps XLA from merging recomputations)."""
    if config.remat == "none":
        return block
    return nn.remat(block, policy=REMAT_POLICIES[config.remat], prevent_cse=not config.scan_layers)


def apply_layers(
    block: type[nn.Module],
    config: ModelConfig,
    n_layers: int,
    name: str,
    x_BTD: jax.Array,
    shared: tuple[Any, ...],
    per_layer: Any = None,
) -> tuple[jax.Array, Any]:
    """Runs `n_layers` blocks `block(config)(x, *shared[, layer's part of per_layer]) -> (x, y)`.

    `shared` inputs (positions, masks, a relative bias, the encoder output) reach every layer
    unchanged. `per_layer` (a decoding cache) is a sequence with one entry per layer in the loop
    and one pytree with a leading layers dimension under scan; the layers' `y` come back in the
    same layout, or None without `per_layer`.
    """
    layer_block = remat(block, config)
    if config.scan_layers:
        extra = () if per_layer is None else (0,)
        scanned = nn.scan(
            layer_block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast,) * len(shared) + extra,
            length=n_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        args = shared if per_layer is None else (*shared, per_layer)
        x_BTD, ys = scanned(config, name=name)(x_BTD, *args)
        return x_BTD, None if per_layer is None else ys
    ys = []
    for layer in range(n_layers):
        args = shared if per_layer is None else (*shared, per_layer[layer])
        x_BTD, y = layer_block(config, name=f"{name}_{layer}")(x_BTD, *args)
        ys.append(y)
    return x_BTD, None if per_layer is None else tuple(ys)


def cache_index(cache: Any) -> jax.Array:
    """The slot of the next token in a decoding cache of either layout."""
    leaves = jax.tree.leaves(cache, is_leaf=lambda node: isinstance(node, LayerCache))
    layer = next(leaf for leaf in leaves if isinstance(leaf, LayerCache))
    return layer.index.reshape(-1)[0]


def stacked_cache(caches: Sequence[Any]) -> Any:
    """Per-layer caches stacked along a leading layers dimension (the scan layout)."""
    return jax.tree.map(lambda *layers: jnp.stack(layers), *caches)


def layer_groups(config: ModelConfig) -> list[tuple[tuple[str, ...], str, int]]:
    """(path to the parent, block name, number of blocks) of each stack in a model's params."""
    if config.arch == "gpt":
        return [((), "h", config.n_layers)]
    if config.arch == "bert":
        return [((), "layer", config.n_layers)]
    return [(("encoder",), "layer", config.n_layers),
            (("decoder",), "layer", config.decoder_layers)]


def stack_layers(params: Any, config: ModelConfig) -> Any:
    """Parameters of the loop layout (`h_0..h_{L-1}`) in the scan layout (`h`, layers first);
    parameters already stacked come back unchanged. Layers that differ in structure or shape
    cannot share one scanned block: a one-line ConfigError says which."""
    params = _copy(params)
    for path, name, n_layers in layer_groups(config):
        parent = _parent(params, path)
        if name in parent:
            continue
        names = [f"{name}_{layer}" for layer in range(n_layers)]
        missing = [layer for layer in names if layer not in parent]
        if missing:
            raise ConfigError(
                f"cannot stack layers for model.scan_layers: {'/'.join((*path, missing[0]))} is "
                f"missing (the config says {n_layers} layers); check model.n_layers"
            )
        layers = [parent.pop(layer) for layer in names]
        _check_identical(layers, path, names)
        parent[name] = jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]),
                                    *layers)
    return params


def unstack_layers(params: Any, config: ModelConfig) -> Any:
    """Parameters of the scan layout in the loop layout; loop-layout parameters come back
    unchanged."""
    params = _copy(params)
    for path, name, n_layers in layer_groups(config):
        parent = _parent(params, path)
        if name not in parent:
            continue
        stacked = parent.pop(name)
        depth = {leaf.shape[0] for leaf in jax.tree.leaves(stacked)}
        if depth != {n_layers}:
            raise ConfigError(
                f"cannot unstack {'/'.join((*path, name))}: its leading dimension is "
                f"{sorted(depth)}, not the config's {n_layers} layers; check model.n_layers"
            )
        for layer in range(n_layers):
            parent[f"{name}_{layer}"] = jax.tree.map(lambda leaf: leaf[layer], stacked)
    return params


def _check_identical(layers: list[Any], path: tuple[str, ...], names: list[str]) -> None:
    first = jax.tree.map(np.shape, layers[0])
    for name, layer in zip(names[1:], layers[1:]):
        shapes = jax.tree.map(np.shape, layer)
        if jax.tree.structure(shapes) != jax.tree.structure(first) or shapes != first:
            raise ConfigError(
                f"cannot scan layers: {'/'.join((*path, name))} differs in its parameters' names "
                f"or shapes from {names[0]}; train it with model.scan_layers=false"
            )


def _copy(tree: Any) -> Any:
    """Nested dicts copied (leaves shared), so conversion never edits the caller's params."""
    if isinstance(tree, Mapping):
        return {key: _copy(value) for key, value in tree.items()}
    return tree


def _parent(params: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        params = params[key]
    return params
