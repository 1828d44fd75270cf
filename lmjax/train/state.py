"""The training state, a plain pytree {step, params, opt_state}, created already sharded.

Parameters are initialised inside `jax.jit` with output shardings taken from their logical
axis names, so no device ever holds the whole model. The optimizer state is initialised from
the boxed (name-carrying) parameters, so Adam's moments inherit the parameters' shardings.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lmjax import parallel
from lmjax.train import mup

TrainState = dict[str, Any]


def _boxed_state_fn(model: nn.Module, optimizer: optax.GradientTransformation, example: dict):
    def init(rng: jax.Array) -> TrainState:
        params = mup.scale_init(model.init(rng, **example)["params"], model.config)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}

    return init


def state_shardings(model, optimizer, example: dict, mesh: Mesh, rules: parallel.Rules) -> Any:
    """NamedShardings of every leaf of the state, from the parameters' logical names."""
    with parallel.activate(mesh, rules):
        abstract = jax.eval_shape(_boxed_state_fn(model, optimizer, example), jax.random.key(0))
    return parallel.logical_shardings(nn.get_partition_spec(abstract), mesh, rules)


def init_state(model, optimizer, example: dict, rng: jax.Array, shardings: Any,
               mesh: Mesh, rules: parallel.Rules) -> TrainState:
    init = _boxed_state_fn(model, optimizer, example)
    with parallel.activate(mesh, rules):
        return jax.jit(lambda key: nn.unbox(init(key)), out_shardings=shardings)(rng)


def abstract_state(shardings: Any, model, optimizer, example: dict, mesh: Mesh,
                   rules: parallel.Rules) -> TrainState:
    """ShapeDtypeStructs with shardings: what a checkpoint restore fills in."""
    init = _boxed_state_fn(model, optimizer, example)
    with parallel.activate(mesh, rules):
        shapes = jax.eval_shape(lambda key: nn.unbox(init(key)), jax.random.key(0))
    return jax.tree.map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
        shapes, shardings,
    )


def count_params(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
