"""Autoregressive decoding for the GPT decoder: sampling rules and a compiled generator.

With the cache, a prompt costs one jitted prefill and each new token one jitted step over a
fixed-size key/value cache (`lmjax.models.gpt.init_cache`), so a step's cost does not grow
with what was generated and nothing recompiles between tokens. The uncached path recomputes
the whole fixed-length buffer every token; it exists to check the cache and to show it pays.

Token i of a generation is drawn with `fold_in(PRNGKey(seed), i)`, so a seed reproduces a
sample whichever path produced it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.errors import ConfigError, DataError
from lmjax.models.gpt import init_cache


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


class Generator:
    """One model's compiled prefill, step and uncached step for one sampling rule.

    Build it once and call `generate` many times: the jitted functions are compiled per
    (batch, prompt length, cache length) and reused. `vocab_size` below the model's keeps
    sampling inside the tokenizer's ids when the embedding table was padded.
    """

    def __init__(self, model: nn.Module, params: Any, sampling: Sampling = Sampling(),
                 vocab_size: int | None = None) -> None:
        self.model = model
        self.config = model.config
        self.params = jax.tree.map(jnp.asarray, params)
        self.sampling = sampling
        self.vocab_size = vocab_size or self.config.vocab_size
        self._advance = jax.jit(self._advance_fn, donate_argnums=(1,))
        self._recompute = jax.jit(self._recompute_fn, donate_argnums=(1,))

    def generate(
        self,
        prompt_ids: Sequence[int] | np.ndarray,
        max_new_tokens: int,
        seed: int = 0,
        stop_ids: Collection[int] = (),
        use_cache: bool = True,
    ) -> list[list[int]]:
        """New ids for each prompt row (a list of ids or a B×T array of equal-length prompts),
        at most `max_new_tokens` and no further than the model's context allows; a row ends
        before its first stop id. The prompt's last token sits at most at the last position."""
        prompt_BT = self._check_prompt(prompt_ids)
        n_new = min(max_new_tokens, self.config.max_len - prompt_BT.shape[1] + 1)
        if n_new <= 0:
            return [[] for _ in range(prompt_BT.shape[0])]
        key = jax.random.PRNGKey(seed)
        run = self._run_cached if use_cache else self._run_uncached
        tokens_NB = run(prompt_BT, n_new, key, frozenset(stop_ids))
        return [_until_stop(row, stop_ids) for row in np.stack(tokens_NB, axis=1).tolist()]

    def _check_prompt(self, prompt_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        prompt_BT = np.asarray(prompt_ids, dtype=np.int32)
        prompt_BT = prompt_BT[None] if prompt_BT.ndim == 1 else prompt_BT
        if prompt_BT.ndim != 2 or prompt_BT.shape[1] == 0:
            raise DataError("the prompt must hold at least one token (e.g. BOS)")
        if prompt_BT.shape[1] > self.config.max_len:
            raise DataError(
                f"the prompt is {prompt_BT.shape[1]} tokens but the model's context is "
                f"{self.config.max_len}: shorten the prompt"
            )
        if prompt_BT.min() < 0 or prompt_BT.max() >= self.config.vocab_size:
            raise DataError(f"prompt ids must lie in [0, {self.config.vocab_size})")
        return prompt_BT

    def _run_cached(self, prompt_BT, n_new, key, stop_ids) -> list[np.ndarray]:
        """Prefill, then one step per token; the last token is never fed, so it needs no slot."""
        batch, prompt_len = prompt_BT.shape
        cache = init_cache(self.config, batch, prompt_len + n_new - 1)
        stops = _StopTracker(batch, stop_ids)
        token_B, cache = self._advance(self.params, cache, jnp.asarray(prompt_BT), key, 0)
        tokens = [token_B]
        for i in range(1, n_new):
            if stops.all_stopped(token_B):
                break
            token_B, cache = self._advance(self.params, cache, token_B[:, None], key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _run_uncached(self, prompt_BT, n_new, key, stop_ids) -> list[np.ndarray]:
        """The whole buffer through the model for every token (one shape, one compilation)."""
        batch, prompt_len = prompt_BT.shape
        ids_BL = jnp.zeros((batch, prompt_len + n_new - 1), jnp.int32).at[:, :prompt_len].set(prompt_BT)
        stops = _StopTracker(batch, stop_ids)
        tokens = []
        for i in range(n_new):
            if tokens and stops.all_stopped(tokens[-1]):
                break
            token_B, ids_BL = self._recompute(self.params, ids_BL, prompt_len + i, key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _advance_fn(self, params, cache, ids_BT, key, i):
        logits_BTV, cache = self.model.apply({"params": params}, ids_BT, cache=cache)
        return self._sample(logits_BTV[:, -1], key, i), cache

    def _recompute_fn(self, params, ids_BL, length, key, i):
        """Samples the token after the first `length` ids and writes it at `length` (a write
        past the buffer's end, for the last token, is dropped)."""
        logits_BLV = self.model.apply({"params": params}, ids_BL)
        logits_BV = jax.lax.dynamic_index_in_dim(logits_BLV, length - 1, axis=1, keepdims=False)
        token_B = self._sample(logits_BV, key, i)
        return token_B, ids_BL.at[:, length].set(token_B, mode="drop")

    def _sample(self, logits_BV, key, i):
        return sample(logits_BV[:, :self.vocab_size], jax.random.fold_in(key, i), self.sampling)


class _StopTracker:
    """Which rows have produced a stop id. Without stop ids it never reads tokens back, so
    steps are dispatched without waiting for the device."""

    def __init__(self, batch: int, stop_ids: frozenset[int]) -> None:
        self.stop_ids = np.array(sorted(stop_ids), dtype=np.int32)
        self.stopped_B = np.zeros(batch, dtype=bool)

    def all_stopped(self, token_B: jax.Array) -> bool:
        if not self.stop_ids.size:
            return False
        self.stopped_B |= np.isin(np.asarray(token_B), self.stop_ids)
        return bool(self.stopped_B.all())


def _until_stop(row: list[int], stop_ids: Collection[int]) -> list[int]:
    for position, token in enumerate(row):
        if token in stop_ids:
            return row[:position]
    return row
