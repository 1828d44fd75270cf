"""Train and eval step functions: pure (state, batch) -> (state, metrics), jitted by the loop.

Gradient accumulation splits the global batch into `accum` microbatches (rows i, i+A, ...
so each microbatch keeps the batch sharding) and sums token-weighted losses, so the update
equals the one for the whole batch at once.

Every step reports `finite`: whether the loss, the gradient norm and the updated parameters'
norm are all finite. It is computed inside the step and fetched with the other metrics when
the loop logs, so checking it costs no extra host synchronisation. With `skip_nonfinite` a
step that is not finite keeps the parameters and optimizer state it was given (the step
counter still advances: the batch was consumed).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lmjax.objectives.base import Batch, Objective
from lmjax.train.state import TrainState

# (params, batch) -> (loss_sum, (weight_sum, {name: sum})): summed so microbatches add up.
SummedLoss = Callable[[Any, Batch], tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array]]]]

def summed_loss_fn(model: nn.Module, objective: Objective):
    # Options that are not batch arrays, e.g. CausalLM's output_hidden for a chunked loss.
    options = getattr(objective, "model_options", {})

    def summed_loss(params: Any, batch: Batch):
        logits = model.apply({"params": params}, **objective.model_inputs(batch), **options)
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


def _keep_if(ok: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `ok`, else `old`, leaf by leaf (a select, so NaNs in `new` never leak)."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def make_train_step(model: nn.Module, objective: Objective, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, accum: int = 1,
                    skip_nonfinite: bool = False) -> Callable:
    return make_update_step(summed_loss_fn(model, objective), optimizer, schedule, accum,
                            skip_nonfinite)


def make_update_step(summed_loss: SummedLoss, optimizer: optax.GradientTransformation,
                     schedule: optax.Schedule, accum: int = 1,
                     skip_nonfinite: bool = False) -> Callable:
    """The step for any `summed_loss(params, batch) -> (loss_sum, (weight_sum, extra sums))`:
    an objective's (`make_train_step`) or a post-training method's (`lmjax.posttrain.engine`),
    so both get the same accumulation, clipping, schedule and non-finite checks."""

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        (loss_sum, (weight_sum, extra)), grads = _accumulated_grads(
            summed_loss, state["params"], batch, accum
        )
        denominator = jnp.maximum(weight_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        loss, grad_norm, param_norm = loss_sum / denominator, optax.tree.norm(grads), optax.tree.norm(params)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
        if skip_nonfinite:
            params = _keep_if(finite, params, state["params"])
            opt_state = _keep_if(finite, opt_state, state["opt_state"])
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
        metrics = {
            "loss": loss,
            "tokens": weight_sum,
            "grad_norm": grad_norm,
            "param_norm": param_norm,
            "finite": finite,
            "learning_rate": schedule(state["step"]),
            **{name: value / denominator for name, value in extra.items()},
        }
        return new_state, metrics

    return train_step


def make_eval_step(model: nn.Module, objective: Objective,
                   token_bytes: jax.Array | None = None) -> Callable:
    """Summed loss, token count and extras; with `token_bytes` (UTF-8 bytes per token id)
    also the bytes of text the evaluated targets stand for, for bits per byte."""
    summed_loss = summed_loss_fn(model, objective)

    def eval_step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        loss_sum, (weight_sum, extra) = summed_loss(params, batch)
        out = {"loss_sum": loss_sum, "tokens": weight_sum, **extra}
        if token_bytes is not None:
            out["target_bytes"] = (jnp.asarray(token_bytes)[batch["targets"]] * batch["weights"]).sum()
        return out

    return eval_step
