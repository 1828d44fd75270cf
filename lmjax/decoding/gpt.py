"""Autoregressive decoding for the GPT decoder: a compiled generator over a key/value cache.

With the cache, a prompt costs one jitted prefill and each new token one jitted step over a
fixed-size key/value cache (`lmjax.models.gpt.init_cache`), so a step's cost does not grow
with what was generated and nothing recompiles between tokens. The uncached path recomputes
the whole fixed-length buffer every token; it exists to check the cache and to show it pays.

Prompts of different lengths are left-padded into one batch with an attention mask: padded
keys are hidden and positions skip the padding, so every row continues as it would alone.
Token i of a generation is drawn with `fold_in(PRNGKey(seed), i)`, so a seed reproduces a
sample whichever path produced it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.decoding.prompts import Prompts, StopTracker, pad, prompt_rows, rows_until_stop
from lmjax.decoding.sampling import Sampling, sample
from lmjax.models.gpt import init_cache


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
        prompts: Prompts,
        max_new_tokens: int,
        seed: int = 0,
        stop_ids: Collection[int] = (),
        use_cache: bool = True,
    ) -> list[list[int]]:
        """New ids for each prompt (one list of ids, a list of lists of any lengths, or a B×T
        array): at most `max_new_tokens`, and no further than the model's context allows that
        row (its last fed token sits at most at the last position); a row ends before its
        first stop id. Rows stop independently."""
        rows = prompt_rows(prompts, self.config.vocab_size, self.config.max_len)
        limits = [max(0, min(max_new_tokens, self.config.max_len - row.size + 1)) for row in rows]
        n_new = max(limits)
        if n_new == 0:
            return [[] for _ in rows]
        prompt_BT, mask_BT = pad(rows, left=True)
        # Equal lengths need no mask, which keeps the unmasked (blocked) attention.
        mask_BT = None if mask_BT.all() else mask_BT
        key = jax.random.PRNGKey(seed)
        run = self._run_cached if use_cache else self._run_uncached
        tokens_NB = run(prompt_BT, mask_BT, n_new, key, stop_ids)
        return rows_until_stop(tokens_NB, limits, stop_ids)

    def _run_cached(self, prompt_BT, mask_BT, n_new, key, stop_ids) -> list[np.ndarray]:
        """Prefill, then one step per token; the last token is never fed, so it needs no slot."""
        batch, prompt_len = prompt_BT.shape
        cache = init_cache(self.config, batch, prompt_len + n_new - 1)
        mask_BS = _slot_mask(mask_BT, n_new)
        stops = StopTracker(batch, stop_ids)
        token_B, cache = self._advance(self.params, cache, jnp.asarray(prompt_BT), mask_BS, key, 0)
        tokens = [token_B]
        for i in range(1, n_new):
            if stops.all_stopped(token_B):
                break
            token_B, cache = self._advance(self.params, cache, token_B[:, None], mask_BS, key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _run_uncached(self, prompt_BT, mask_BT, n_new, key, stop_ids) -> list[np.ndarray]:
        """The whole buffer through the model for every token (one shape, one compilation)."""
        batch, prompt_len = prompt_BT.shape
        ids_BL = jnp.zeros((batch, prompt_len + n_new - 1), jnp.int32).at[:, :prompt_len].set(prompt_BT)
        mask_BL = _slot_mask(mask_BT, n_new)
        stops = StopTracker(batch, stop_ids)
        tokens = []
        for i in range(n_new):
            if tokens and stops.all_stopped(tokens[-1]):
                break
            token_B, ids_BL = self._recompute(self.params, ids_BL, mask_BL, prompt_len + i, key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _advance_fn(self, params, cache, ids_BT, mask_BS, key, i):
        logits_BTV, cache = self.model.apply({"params": params}, ids_BT, cache=cache,
                                             attention_mask=mask_BS)
        return self._sample(logits_BTV[:, -1], key, i), cache

    def _recompute_fn(self, params, ids_BL, mask_BL, length, key, i):
        """Samples the token after the first `length` ids and writes it at `length` (a write
        past the buffer's end, for the last token, is dropped)."""
        logits_BLV = self.model.apply({"params": params}, ids_BL, attention_mask=mask_BL)
        logits_BV = jax.lax.dynamic_index_in_dim(logits_BLV, length - 1, axis=1, keepdims=False)
        token_B = self._sample(logits_BV, key, i)
        return token_B, ids_BL.at[:, length].set(token_B, mode="drop")

    def _sample(self, logits_BV, key, i):
        return sample(logits_BV[:, :self.vocab_size], jax.random.fold_in(key, i), self.sampling)


def _slot_mask(mask_BT: np.ndarray | None, n_new: int) -> jax.Array | None:
    """The prompt's mask extended over the slots of generated tokens (all real), or None."""
    if mask_BT is None:
        return None
    return jnp.asarray(np.pad(mask_BT, ((0, 0), (0, n_new - 1)), constant_values=1))
