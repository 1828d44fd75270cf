"""A scalar head on the decoder's final hidden state: the reward model's and PPO's value
head. Kept beside the decoder's parameters as {"w": D, "b": ()}, zero-initialised so a new
head outputs 0 and does not disturb the first updates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def init_head(d_model: int) -> dict[str, jax.Array]:
    return {"w": jnp.zeros((d_model,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def apply_head(head: dict[str, Any], hidden_BTD: jax.Array) -> jax.Array:
    """B×T scalars."""
    return hidden_BTD @ head["w"] + head["b"]
