"""The output layer in factored form, for losses that never hold all B×T×V logits at once.

`GPT(...)(ids, output_hidden=True)` returns `Unembedded(hidden_BTD, weights_DV)`, whose
product is the logits; `lmjax.objectives.causal_lm` multiplies it out one vocabulary chunk at
a time (`model.loss_chunks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.models.layers import normal


class Unembedded(NamedTuple):
    """Final hidden states B×T×D and output weights D×V, in the compute dtype: the logits
    are hidden_BTD · weights_DV, cast to float32."""

    hidden_BTD: jax.Array
    weights_DV: jax.Array


class Unembed(nn.Module):
    """An untied output layer: a D×V kernel named as `Dense` names it (`lm_head/kernel`, axes
    embed × vocab), exposed as `weights_DV` so the logits can also be formed in chunks."""

    d_model: int
    vocab_size: int
    dtype: Any = jnp.float32
    init_std: float = 0.02

    def setup(self) -> None:
        self.kernel = self.param(
            "kernel", nn.with_logical_partitioning(normal(self.init_std), ("embed", "vocab")),
            (self.d_model, self.vocab_size), jnp.float32,
        )

    def weights_DV(self) -> jax.Array:
        return self.kernel.astype(self.dtype)

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        return jnp.einsum("btd,dv->btv", x_BTD, self.weights_DV())
