"""Sampling rules: how the next token is chosen from a step's logits (greedy, temperature,
top-k, top-p), shared by every generator."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lmjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. temperature 0 is greedy; top_k 0 and top_p 1 are off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature} must be >= 0 (0 is greedy)")
        if self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k} must be >= 0 (0 keeps every token)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must lie in (0, 1] (1 keeps every token)")


def filter_logits(logits_BV: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """Logits with -inf outside the sampling support: the k most likely tokens, then the
    smallest most-likely set whose probability reaches top_p (the token that crosses top_p
    is kept, as in llama2.c and transformers). Ties at a cut-off are all kept."""
    if top_k and top_k < logits_BV.shape[-1]:
        kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
    if top_p < 1.0:
        sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
        probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
        mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
        kept_BV = jnp.where(mass_before_BV < top_p, sorted_BV, jnp.inf)
        threshold_B1 = jnp.min(kept_BV, axis=-1, keepdims=True)
        logits_BV = jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)
    return logits_BV


def sample(logits_BV: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """Next ids B (int32) from float32 logits."""
    if sampling.temperature == 0:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    logits_BV = filter_logits(logits_BV / sampling.temperature, sampling.top_k, sampling.top_p)
    return jax.random.categorical(key, logits_BV, axis=-1).astype(jnp.int32)
