"""Train and eval step functions: pure (state, batch) -> (state, metrics), jitted by the loop.

Gradient accumulation splits the global batch into `accum` microbatches (rows i, i+A, ...
so each microbatch keeps the batch sharding) and sums token-weighted losses, so the update
equals the one for the whole batch at once.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lmjax.objectives.base import Batch, Objective
from lmjax.train.state import TrainState


def summed_loss_fn(model: nn.Module, objective: Objective):
    def summed_loss(params: Any, batch: Batch):
        logits = model.apply({"params": params}, **objective.model_inputs(batch))
        loss_sum, weight_sum, extra = objective.loss(logits, batch)
        return loss_sum, (weight_sum, extra)

    return summed_loss


def _microbatch(batch: Batch, index: jax.Array, accum: int) -> Batch:
    def take(x: jax.Array) -> jax.Array:
        grouped = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
        return jax.lax.dynamic_index_in_dim(grouped, index, axis=1, keepdims=False)

    return jax.tree.map(take, batch)


def _accumulated_grads(summed_loss, params: Any, batch: Batch, accum: int):
    grad_fn = jax.value_and_grad(summed_loss, has_aux=True)
    if accum == 1:
        return grad_fn(params, batch)

    def body(index, carry):
        (loss_sum, (weight_sum, extra)), grads = grad_fn(params, _microbatch(batch, index, accum))
        total = ((loss_sum, (weight_sum, extra)), grads)
        return jax.tree.map(jnp.add, carry, total)

    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, params, _microbatch(batch, 0, accum)))
    return jax.lax.fori_loop(0, accum, body, zero)


def make_train_step(model: nn.Module, objective: Objective, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, accum: int = 1) -> Callable:
    summed_loss = summed_loss_fn(model, objective)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        (loss_sum, (weight_sum, extra)), grads = _accumulated_grads(
            summed_loss, state["params"], batch, accum
        )
        denominator = jnp.maximum(weight_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new_state = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss_sum / denominator,
            "tokens": weight_sum,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state["step"]),
            **{name: value / denominator for name, value in extra.items()},
        }
        return new_state, metrics

    return train_step


def make_eval_step(model: nn.Module, objective: Objective) -> Callable:
    summed_loss = summed_loss_fn(model, objective)

    def eval_step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        loss_sum, (weight_sum, extra) = summed_loss(params, batch)
        return {"loss_sum": loss_sum, "tokens": weight_sum, **extra}

    return eval_step
